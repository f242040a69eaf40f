#!/usr/bin/env bash
# Transactions' cost, side by side in one run on one broker of this machine (release build,
# sluice-bench producer-perf / consumer-perf, librdkafka), alternating ROUNDS times:
#   1. produce throughput, acks=all idempotent, against transactional with TXN_SMALL and
#      TXN_LARGE records per transaction (commit latency p50/p99 from the commits);
#   2. a read_committed consume of the transactional topic against read_uncommitted.
# Output: a plain-text summary on stdout and the raw reports under OUT.
#
#   scripts/bench-transactions.sh
#   RECORDS=200000 RECORD_SIZE=1024 ROUNDS=2 TXN_SMALL=100 TXN_LARGE=10000 OUT=/tmp/bench-txn
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=${RECORDS:-200000}
RECORD_SIZE=${RECORD_SIZE:-1024}
ROUNDS=${ROUNDS:-2}
TXN_SMALL=${TXN_SMALL:-100}
TXN_LARGE=${TXN_LARGE:-10000}
PORT=${PORT:-29392}
OUT=${OUT:-/tmp/bench-transactions}

cd "$ROOT"
cargo build --release --bin sluice >&2 && cargo build --release -p bench-harness --bin sluice-bench >&2
BENCH=$ROOT/target/release/sluice-bench
rm -rf "$OUT"
mkdir -p "$OUT/data"
"$ROOT/target/release/sluice" serve --data-dir "$OUT/data" --listen "127.0.0.1:$PORT" \
    --override admin.listener=-1 --override transaction.state.log.num.partitions=4 \
    >"$OUT/broker.out" 2>"$OUT/broker.err" &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true; wait $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q LISTENING "$OUT/broker.out" 2>/dev/null && break; sleep 0.1; done
BOOT=127.0.0.1:$PORT

produce() { # name topic [extra args...]
    local name=$1 topic=$2
    shift 2
    "$BENCH" producer-perf --bootstrap-server "$BOOT" --topic "$topic" --create-topic --partitions 1 \
        --num-records "$RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
        --producer-props acks=all enable.idempotence=true linger.ms=5 batch.size=1048576 \
        --report "$OUT/$name.json" "$@" | tee "$OUT/$name.txt" | tail -2
}
consume() { # name topic isolation
    "$BENCH" consumer-perf --bootstrap-server "$BOOT" --topic "$2" --messages "$RECORDS" \
        --consumer-props "isolation.level=$3" --report "$OUT/$1.json" | tee "$OUT/$1.txt" | tail -1
}

for r in $(seq "$ROUNDS"); do
    echo "== round $r"
    echo "-- acks=all, not transactional"
    produce "plain-$r" "plain-$r"
    echo "-- transactional, $TXN_SMALL records per transaction"
    produce "txn-small-$r" "txn-small-$r" --transactional-id "bench-small-$r" --transaction-records "$TXN_SMALL"
    echo "-- transactional, $TXN_LARGE records per transaction"
    produce "txn-large-$r" "txn-large-$r" --transactional-id "bench-large-$r" --transaction-records "$TXN_LARGE"
    echo "-- consume txn-small-$r read_uncommitted, then read_committed"
    consume "read-uncommitted-$r" "txn-small-$r" read_uncommitted
    consume "read-committed-$r" "txn-small-$r" read_committed
done

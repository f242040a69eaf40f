#!/usr/bin/env bash
# Replication's cost, side by side in one run on one 3-node cluster of this machine
# (scripts/cluster.sh, one core per node, release build):
#   1. produce throughput and broker CPU per GB, acks=all, RF 3 against RF 1, alternating
#      ROUNDS times (sluice-bench producer-perf, librdkafka);
#   2. end-to-end latency (produce → consume, acks=all) at E2E_RATE records/s of 1 KiB on RF 3;
#   3. the nodes' shard counters at shutdown: record bytes sent by sendfile against copied
#      (follower fetches go out on the same zero-copy path as consumers').
# Output: a plain-text summary on stdout and the raw reports under OUT.
#
#   scripts/bench-replication.sh            # defaults below; knobs in the environment
#   RECORDS=300000 RECORD_SIZE=1024 PARTITIONS=4 ROUNDS=3 E2E_RATE=51200 OUT=/tmp/bench-repl
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECORDS=${RECORDS:-300000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PARTITIONS=${PARTITIONS:-4}
ROUNDS=${ROUNDS:-3}
E2E_RATE=${E2E_RATE:-51200}
E2E_SECS=${E2E_SECS:-20}
OUT=${OUT:-/tmp/bench-replication}
export CLUSTER_DIR=${CLUSTER_DIR:-$OUT/cluster}
export KAFKA_BASE_PORT=${KAFKA_BASE_PORT:-29192}
export CONTROLLER_BASE_PORT=${CONTROLLER_BASE_PORT:-29292}

cd "$ROOT"
cargo build --release --bin sluice >&2 && cargo build --release -p bench-harness --bin sluice-bench >&2
export SLUICE_BIN=$ROOT/target/release/sluice
BENCH=$ROOT/target/release/sluice-bench
rm -rf "$OUT"
mkdir -p "$OUT"
BOOT="127.0.0.1:$KAFKA_BASE_PORT,127.0.0.1:$((KAFKA_BASE_PORT + 1)),127.0.0.1:$((KAFKA_BASE_PORT + 2))"

cleanup() { scripts/cluster.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
scripts/cluster.sh start 3 >&2

# Broker CPU seconds (user + system) of every node, summed.
cpu_s() {
    local total=0 id pid ticks
    for id in 1 2 3; do
        pid=$(cat "$CLUSTER_DIR/node-$id/pid")
        ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        total=$((total + ticks))
    done
    echo "scale=3; $total / $(getconf CLK_TCK)" | bc
}

# Waits until every node's Metadata lists 3 brokers (a fresh cluster, or after the start).
for _ in $(seq 1 300); do
    if kcat -b "$BOOT" -L -J 2>/dev/null | grep -q '"brokers":\[[^]]*},{[^]]*},{'; then break; fi
    sleep 0.2
done

summary=$OUT/summary.txt
{
    echo "bench-replication: 3 nodes × --cores 1 on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
    echo "records $RECORDS × $RECORD_SIZE B, $PARTITIONS partitions, acks=all, rounds $ROUNDS (RF 1 and RF 3 alternating)"
} >"$summary"

for rf in 1 3; do
    "$BENCH" producer-perf --bootstrap-server "$BOOT" --topic "rf$rf" --create-topic \
        --partitions "$PARTITIONS" --replication-factor "$rf" --num-records 1000 \
        --record-size "$RECORD_SIZE" --throughput -1 --producer-props acks=all >/dev/null
done
sleep 2

for round in $(seq 1 "$ROUNDS"); do
    for rf in 1 3; do
        before=$(cpu_s)
        report=$OUT/produce-rf$rf-round$round.json
        line=$("$BENCH" producer-perf --bootstrap-server "$BOOT" --topic "rf$rf" \
            --num-records "$RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
            --producer-props acks=all linger.ms=5 batch.size=1048576 \
            --report "$report" --label "RF $rf acks=all round $round" | tail -1)
        after=$(cpu_s)
        gb=$(echo "scale=6; $RECORDS * $RECORD_SIZE / 1000000000" | bc)
        cpu=$(echo "scale=3; $after - $before" | bc)
        per_gb=$(echo "scale=2; $cpu / $gb" | bc)
        echo "round $round RF $rf: $line | broker CPU ${cpu} s (3 nodes) = ${per_gb} s/GB" | tee -a "$summary" >&2
    done
done

"$BENCH" e2e-latency --bootstrap-server "$BOOT" --topic e2e-rf3 --create-topic \
    --partitions "$PARTITIONS" --replication-factor 3 --rate "$E2E_RATE" \
    --duration-secs "$E2E_SECS" --record-size 1024 --acks all \
    --report "$OUT/e2e-rf3.json" 2>&1 | tail -3 | sed 's/^/e2e RF 3: /' | tee -a "$summary" >&2

scripts/cluster.sh stop >&2
for id in 1 2 3; do
    grep 'shard stopped' "$CLUSTER_DIR/node-$id/stderr.log" | tail -"$(grep -c 'shard stopped' "$CLUSTER_DIR/node-$id/stderr.log")" |
        sed -E 's/.*shard=([0-9]+).*produced_bytes=([0-9]+).*fetched_bytes=([0-9]+).*sendfile_bytes=([0-9]+).*copied_bytes=([0-9]+).*replica_file_bytes=([0-9]+).*replica_copied_bytes=([0-9]+).*/node '"$id"' shard \1: produced \2 fetched \3 sendfile \4 copied \5; to followers: file ranges \6 copied \7/' |
        tee -a "$summary" >&2
done
cat "$summary"

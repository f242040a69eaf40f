#!/usr/bin/env bash
# Before/after of two broker builds in one run: scripts/bench.sh's produce and fetch phases
# (sluice-bench producer-perf and consumer-perf, the same flags), alternating the builds over
# ROUNDS rounds so that both see the same machine. Each round starts each build fresh (new
# data dir): produce 1 KiB and 100 B (acks=1, 2 partitions), then fetch the 1 KiB topic twice
# (consume-first: the data as written, O_DIRECT, so not in the page cache; consume-cached:
# again). The order of the two builds flips every round. Broker CPU (utime+stime) per phase.
#
# Usage: scripts/bench-ab.sh OLD_BROKER NEW_BROKER [RESULTS_DIR]
# Knobs: ROUNDS=5 CORES=2 BROKER_CPUS=0,1 CLIENT_CPUS=1 RECORDS_1K=300000 RECORDS_100B=1000000
#   PHASE_TIMEOUT=120 BENCH_BIN=target/release/sluice-bench DATA_PARENT=${TMPDIR:-/tmp}
# Output: RESULTS_DIR/<round>-<build>-<phase>.json (sluice-bench reports), results.tsv (one
# line per phase: round build phase records/s broker_cpu_ticks), and a table of medians
# and ratios on stdout (summary.md).
# Bounded: every phase runs under `timeout`; traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OLD=${1:?old broker binary}
NEW=${2:?new broker binary}
RESULTS=${3:-$ROOT/target/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)}
ROUNDS=${ROUNDS:-5}
CORES=${CORES:-2}
BROKER_CPUS=${BROKER_CPUS:-0,1}
CLIENT_CPUS=${CLIENT_CPUS:-1}
RECORDS_1K=${RECORDS_1K:-300000}
RECORDS_100B=${RECORDS_100B:-1000000}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-120}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/sluice-bench}
DATA_PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$RESULTS"
WORK=$(mktemp -d "$DATA_PARENT/sluice-ab.XXXXXX")
BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
{
    printf '%q ' "$0" "$@"; echo
    echo "ROUNDS=$ROUNDS CORES=$CORES BROKER_CPUS=$BROKER_CPUS CLIENT_CPUS=$CLIENT_CPUS RECORDS_1K=$RECORDS_1K RECORDS_100B=$RECORDS_100B"
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ) nproc=$(nproc) kernel=$(uname -r)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "old=$OLD sha256=$(sha256sum "$OLD" | cut -c1-16)"
    echo "new=$NEW sha256=$(sha256sum "$NEW" | cut -c1-16)"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RESULTS/command.txt" >&2
: >"$RESULTS/results.tsv"

ticks() { awk '{ print $14 + $15 }' "/proc/$BROKER_PID/stat"; }

start_broker() { # start_broker BIN LOG
    rm -rf "$WORK/data"; mkdir -p "$WORK/data"
    taskset -c "$BROKER_CPUS" "$1" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --override admin.listener=127.0.0.1:0 \
        --cores "$CORES" >"$2" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=""
    for _ in $(seq 300); do
        BOOTSTRAP=$(sed -n 's/^LISTENING //p' "$2" | head -1)
        [ -n "$BOOTSTRAP" ] && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "broker $1 did not start; log:" >&2; tail -20 "$2" >&2; return 1
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

phase() { # phase ROUND BUILD NAME FIGURE SUBCOMMAND ARGS...
    local round=$1 build=$2 name=$3 figure=$4; shift 4
    local report="$RESULTS/$round-$build-$name.json" before after rate
    before=$(ticks)
    if timeout "$PHASE_TIMEOUT" taskset -c "$CLIENT_CPUS" "$BENCH_BIN" "$@" \
        --bootstrap-server "$BOOTSTRAP" --report "$report" --label "$build-$name" \
        --broker-config "cores=$CORES" >"$RESULTS/$round-$build-$name.txt" 2>&1; then
        after=$(ticks)
        rate=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['figures'][sys.argv[2]]))" "$report" "$figure")
        printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$build" "$name" "$rate" "$((after - before))" \
            | tee -a "$RESULTS/results.tsv" >&2
    else
        echo "round $round $build $name failed; see $RESULTS/$round-$build-$name.txt" >&2
    fi
}

run_build() { # run_build ROUND BUILD BIN
    local round=$1 build=$2 bin=$3
    start_broker "$bin" "$RESULTS/$round-$build-broker.log" || return 0
    phase "$round" "$build" produce-1k records_per_second producer-perf --topic bench-1k \
        --num-records "$RECORDS_1K" --record-size 1024 --throughput -1 --producer-props acks=1 \
        --create-topic --partitions 2
    phase "$round" "$build" produce-100b records_per_second producer-perf --topic bench-100b \
        --num-records "$RECORDS_100B" --record-size 100 --throughput -1 --producer-props acks=1 \
        --create-topic --partitions 2
    phase "$round" "$build" consume-first fetch_messages_per_second consumer-perf \
        --topic bench-1k --messages "$RECORDS_1K" --timeout 10000
    phase "$round" "$build" consume-cached fetch_messages_per_second consumer-perf \
        --topic bench-1k --messages "$RECORDS_1K" --timeout 10000
    stop_broker
}

for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        run_build "$round" old "$OLD"; run_build "$round" new "$NEW"
    else
        run_build "$round" new "$NEW"; run_build "$round" old "$OLD"
    fi
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS/command.txt" >&2

python3 - "$RESULTS/results.tsv" <<'EOF' | tee "$RESULTS/summary.md"
import statistics, sys
rows = [l.split('\t') for l in open(sys.argv[1]).read().splitlines() if l]
phases = ["produce-1k", "produce-100b", "consume-first", "consume-cached"]
print("| phase | old records/s, runs (median) | new records/s, runs (median) | new ÷ old (medians) | per-round new ÷ old | broker CPU ticks old → new (median) |")
print("|---|---|---|---|---|---|")
for p in phases:
    def of(build):
        return {int(r[0]): (int(r[3]), int(r[4])) for r in rows if r[1] == build and r[2] == p}
    old, new = of("old"), of("new")
    if not old or not new:
        continue
    med = lambda d, i: statistics.median(v[i] for v in d.values())
    k = lambda x: f"{x / 1000:.0f}k"
    span = lambda d: f"{k(min(v[0] for v in d.values()))}–{k(max(v[0] for v in d.values()))} ({k(med(d, 0))})"
    per_round = [new[r][0] / old[r][0] for r in sorted(old) if r in new]
    print(f"| {p} | {span(old)} | {span(new)} | {med(new, 0) / med(old, 0):.2f} | "
          f"{' '.join(f'{x:.2f}' for x in per_round)} | {med(old, 1):g} → {med(new, 1):g} |")
EOF

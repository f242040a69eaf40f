#!/usr/bin/env bash
# Side-by-side benchmark on this machine: device limits first (fio O_DIRECT sequential write on
# the data directory's filesystem; iperf3 loopback TCP with sendfile), then Sluice driven by
# sluice-bench (librdkafka): produce 1 KiB and 100 B, fetch twice, end-to-end latency at a fixed
# rate with acks=all, and 1 shard against 2 shards. Broker pinned to CPU 0, clients to CPU 1.
# Broker CPU (utime+stime from /proc/<pid>/stat) is read before and after every phase.
#
# Thin wrapper: the measuring and the arithmetic live in sluice-bench (bench-harness/).
# Bounded: each phase runs under `timeout`; traffic stays on 127.0.0.1.
#
# Usage: scripts/bench.sh [RESULTS_DIR]      (default target/bench-results/<UTC time>)
# Knobs (environment): RECORDS_1K=1000000 RECORDS_100B=2000000 RECORDS_SHARDS=500000
#   E2E_SECS=15 E2E_RATE=51200 FIO_SIZE=1G IPERF_SECS=5 PHASE_TIMEOUT=150
#   BROKER_BIN=target/release/sluice  BENCH_BIN=target/release/sluice-bench
#   DATA_PARENT=${TMPDIR:-/tmp} (the broker's data directory and fio's file go under it)
#   CREATE_TOPIC=1 (0 leaves topics to auto-creation, for brokers without CreateTopics)
#   SKIP_STORAGE=0 (1 leaves out the storage-engine section, sluice-bench log-*)
#   SKIP_BUILD=0 (1 uses BROKER_BIN and BENCH_BIN as they are)
#   SKIP_KAFKA=0 (1 leaves out Apache Kafka as the control, scripts/kafka-control.sh, at the end)
set -euo pipefail
export RUST_LIB_BACKTRACE=0  # an error from sluice-bench is one line, not a stack trace

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RESULTS=${1:-$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
RECORDS_1K=${RECORDS_1K:-1000000}
RECORDS_100B=${RECORDS_100B:-2000000}
RECORDS_SHARDS=${RECORDS_SHARDS:-500000}
E2E_SECS=${E2E_SECS:-15}
E2E_RATE=${E2E_RATE:-51200}          # 51200 x 1 KiB = 50 MiB/s
FIO_SIZE=${FIO_SIZE:-1G}
IPERF_SECS=${IPERF_SECS:-5}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-150}
BROKER_BIN=${BROKER_BIN:-$ROOT/target/release/sluice}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/sluice-bench}
DATA_PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
CREATE_TOPIC=${CREATE_TOPIC:-1}

log() { printf '\n==> %s\n' "$*" >&2; }

# ---- tools and build -------------------------------------------------------------------------
need_apt=()
command -v fio >/dev/null || need_apt+=(fio)
command -v iperf3 >/dev/null || need_apt+=(iperf3)
command -v taskset >/dev/null || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need_apt[*]}; install them (as root: apt-get install -y ${need_apt[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need_apt[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null; }
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "needs 2 CPUs (broker on CPU 0, client on CPU 1); this machine has $(nproc)" >&2
    exit 1
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # Two builds, not one `-p sluice -p bench-harness`: a joint build unifies features across
    # both packages and rebuilds their shared dependencies a third way.
    log "cargo build --release -p sluice; cargo build --release -p bench-harness"
    cargo build --release -p sluice
    cargo build --release -p bench-harness
fi

mkdir -p "$RESULTS"
WORK=$(mktemp -d "$DATA_PARENT/sluice-bench.XXXXXX")
BROKER_PID=""
IPERF_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    [ -n "$IPERF_PID" ] && kill "$IPERF_PID" 2>/dev/null && wait "$IPERF_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
printf '%q ' "$0" "$@" >"$RESULTS/command.txt"; echo >>"$RESULTS/command.txt"
env | grep -E '^(RECORDS_|E2E_|FIO_|IPERF_|PHASE_|BROKER_BIN|BENCH_BIN|DATA_PARENT|CREATE_TOPIC)' >>"$RESULTS/command.txt" || true
{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "data_fs=$(findmnt -n -o SOURCE,FSTYPE -T "$WORK" 2>/dev/null || echo unknown)"
    echo "git_sha=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "git_dirty=$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo yes || echo no)"
} >"$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >&2
if awk '{ exit !($1 > 1.0) }' /proc/loadavg; then
    log "WARNING: load average $(cut -d' ' -f1-3 /proc/loadavg) before starting; other work will skew the figures"
fi

# ---- device limits ---------------------------------------------------------------------------
log "fio: O_DIRECT sequential write, $FIO_SIZE in 1 MiB blocks, iodepth 8, on $WORK"
mkdir -p "$WORK/fio"
timeout "$PHASE_TIMEOUT" taskset -c 0 fio --name=seqwrite --directory="$WORK/fio" --rw=write --direct=1 \
    --bs=1M --size="$FIO_SIZE" --ioengine=libaio --iodepth=8 --output-format=json \
    --output="$RESULTS/fio.json" || log "fio failed"
rm -rf "$WORK/fio"

log "iperf3: loopback TCP, sendfile (-Z), ${IPERF_SECS}s; server CPU 0, client CPU 1"
IPERF_PORT=$((20000 + RANDOM % 20000))
taskset -c 0 iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
timeout "$PHASE_TIMEOUT" taskset -c 1 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -Z -t "$IPERF_SECS" -J \
    >"$RESULTS/iperf3.json" || log "iperf3 failed"
wait "$IPERF_PID" 2>/dev/null || true
IPERF_PID=""

# ---- broker ----------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of the broker in seconds (fields 14 and 15; the comm field has no spaces).
broker_cpu() { awk -v hz="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat"; }
# Whole-machine busy CPU seconds (user+nice+system+irq+softirq) and steal, from /proc/stat.
machine_busy() { awk -v hz="$CLK_TCK" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat; }
machine_steal() { awk -v hz="$CLK_TCK" '/^cpu / { printf "%.2f", $9 / hz }' /proc/stat; }

start_broker() { # start_broker CORES CPU_LIST
    local cores=$1 cpus=$2
    rm -rf "$WORK/data"; mkdir -p "$WORK/data"
    : >"$RESULTS/broker-${cores}shard.log"
    taskset -c "$cpus" "$BROKER_BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --override admin.listener=127.0.0.1:0 --cores "$cores" \
        >"$RESULTS/broker-${cores}shard.log" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=""
    for _ in $(seq 300); do
        BOOTSTRAP=$(sed -n 's/^LISTENING //p' "$RESULTS/broker-${cores}shard.log" | head -1)
        [ -n "$BOOTSTRAP" ] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$BOOTSTRAP" ]; then
        echo "broker (--cores $cores) did not print LISTENING within 30 s; log:" >&2
        tail -20 "$RESULTS/broker-${cores}shard.log" >&2
        return 1
    fi
    log "broker pid $BROKER_PID, --cores $cores on CPU $cpus, listening on $BOOTSTRAP"
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

topic_flags() { [ "$CREATE_TOPIC" = 1 ] && echo "--create-topic --partitions 2"; true; }

# run_phase NAME SUBCOMMAND ARGS...: one sluice-bench run on CPU 1, report in $RESULTS/NAME.json,
# broker CPU seconds in $RESULTS/cpu-NAME.json. A failed phase is logged and skipped.
run_phase() {
    local name=$1; shift
    log "$name: sluice-bench $*"
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        log "$name skipped: broker is not running"; return 0
    fi
    local before after load_before busy_before steal_before status=0
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    busy_before=$(machine_busy)
    steal_before=$(machine_steal)
    before=$(broker_cpu)
    timeout "$PHASE_TIMEOUT" taskset -c 1 "$BENCH_BIN" "$@" --bootstrap-server "$BOOTSTRAP" \
        --report "$RESULTS/$name.json" --label "$name" --broker-config "$BROKER_CONFIG" \
        2>&1 | tee "$RESULTS/$name.txt" || status=$?
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        log "$name: broker exited during the phase"; tail -20 "$RESULTS"/broker-*shard.log >&2; return 0
    fi
    after=$(broker_cpu)
    # Machine-wide busy CPU, less the broker's and the client's, is what other work took from
    # the 2 CPUs during the phase (sluice-bench reports its own CPU as client_cpu_seconds).
    minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
    printf '{"phase": "%s", "broker_cpu_seconds": %s, "machine_busy_cpu_seconds": %s, "steal_seconds": %s, "loadavg_1m_before": %s, "loadavg_1m_after": %s}\n' \
        "$name" "$(minus "$after" "$before")" "$(minus "$(machine_busy)" "$busy_before")" \
        "$(minus "$(machine_steal)" "$steal_before")" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)" \
        >"$RESULTS/cpu-$name.json"
    if [ "$status" -ne 0 ]; then
        log "$name failed (exit $status)"; rm -f "$RESULTS/$name.json"
    fi
}

if start_broker 1 0; then
    BROKER_CONFIG="cores=1"
    # shellcheck disable=SC2046 # topic_flags is deliberately word-split
    run_phase produce-1k producer-perf --topic bench-1k --num-records "$RECORDS_1K" --record-size 1024 \
        --throughput -1 --producer-props acks=1 $(topic_flags) --plot "$RESULTS/produce-1k.svg"
    # shellcheck disable=SC2046
    run_phase produce-100b producer-perf --topic bench-100b --num-records "$RECORDS_100B" --record-size 100 \
        --throughput -1 --producer-props acks=1 $(topic_flags)
    run_phase consume-first consumer-perf --topic bench-1k --messages "$RECORDS_1K" --timeout 10000
    run_phase consume-cached consumer-perf --topic bench-1k --messages "$RECORDS_1K" --timeout 10000
    # shellcheck disable=SC2046
    run_phase e2e-50mb e2e-latency --topic bench-e2e --rate "$E2E_RATE" --duration-secs "$E2E_SECS" \
        --record-size 1024 --acks all $(topic_flags) --plot "$RESULTS/e2e-50mb.svg"
    # shellcheck disable=SC2046
    run_phase produce-1k-1shard producer-perf --topic bench-shards --num-records "$RECORDS_SHARDS" \
        --record-size 1024 --throughput -1 --producer-props acks=1 $(topic_flags)
    stop_broker
fi

# Two shards need both CPUs; the client shares CPU 1 with shard 1, so this row measures
# scaling under contention on a 2-core machine, not clean 2-core scaling.
if start_broker 2 0,1; then
    BROKER_CONFIG="cores=2"
    # shellcheck disable=SC2046
    run_phase produce-1k-2shard producer-perf --topic bench-shards --num-records "$RECORDS_SHARDS" \
        --record-size 1024 --throughput -1 --producer-props acks=1 $(topic_flags)
    stop_broker
fi

# ---- storage engine alone (sluice-bench log-*) ------------------------------------------------
# The partition log as a library on one executor pinned to CPU 0: append throughput against the
# fio figure above, start-up with 1,000 partitions, recovery of a 1 GiB unflushed tail, memory
# per idle partition. Reports in $RESULTS/storage/. SKIP_STORAGE=1 leaves this section out.
if [ "${SKIP_STORAGE:-0}" != 1 ]; then
    mkdir -p "$RESULTS/storage" "$WORK/storage"
    storage_phase() { # storage_phase NAME SUBCOMMAND ARGS...
        local name=$1; shift
        log "storage $name: sluice-bench $*"
        timeout "$PHASE_TIMEOUT" "$BENCH_BIN" "$@" --cpu 0 --data-dir "$WORK/storage" \
            --report "$RESULTS/storage/$name.json" --label "$name" 2>&1 | tee "$RESULTS/storage/$name.txt" \
            || log "storage $name failed"
    }
    fio_flag=()
    [ -s "$RESULTS/fio.json" ] && fio_flag=(--fio-json "$RESULTS/fio.json")
    storage_phase log-append-acks-all log-append --acks all "${fio_flag[@]}"
    storage_phase log-append-acks-1 log-append --acks 1 "${fio_flag[@]}"
    storage_phase log-startup log-startup --partitions 1000
    storage_phase log-recovery log-recovery --tail-bytes 1073741824
    storage_phase log-memory log-memory --partitions 1000
fi
# ---- end of storage engine section -----------------------------------------------------------

# ---- consumer groups (sluice-bench group-*) ----------------------------------------------------
# On by default (~40 s once built); SKIP_GROUPS=1 leaves it out. A fresh broker, --cores 1 on
# CPU 0, with its own log (broker-groups-1shard.log); reports in $RESULTS/group-*.json.
#   group-rebalance: 10 members, 100 partitions, GROUP_ROUNDS=3 leave-then-join rounds; time back
#     to Stable after a member leaves and after one joins (bounded by heartbeat.interval.ms=1000).
#   group-commits: GROUP_COMMITTERS=8 synchronous committers, one group each, GROUP_COMMIT_SECS=10;
#     commits/s and latency through the coordinator's acks=all + fsync path.
# The broker keeps group.initial.rebalance.delay.ms at its default (3000), which only lengthens
# the first join; GROUP_BROKER_FLAGS (word-split) adds serve flags, e.g.
# GROUP_BROKER_FLAGS="--override group.initial.rebalance.delay.ms=0".
if [ "${SKIP_GROUPS:-0}" != 1 ]; then
    group_log="$RESULTS/broker-groups-1shard.log"
    rm -rf "$WORK/data"; mkdir -p "$WORK/data"
    # shellcheck disable=SC2086 # GROUP_BROKER_FLAGS is deliberately word-split
    taskset -c 0 "$BROKER_BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --override admin.listener=127.0.0.1:0 --cores 1 \
        ${GROUP_BROKER_FLAGS:-} >"$group_log" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=""
    for _ in $(seq 300); do
        BOOTSTRAP=$(sed -n 's/^LISTENING //p' "$group_log" | head -1)
        [ -n "$BOOTSTRAP" ] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -n "$BOOTSTRAP" ]; then
        log "groups: broker pid $BROKER_PID, --cores 1 on CPU 0, listening on $BOOTSTRAP"
        BROKER_CONFIG="cores=1"
        # One k=v pair for the report: the extra serve flags as given.
        [ -n "${GROUP_BROKER_FLAGS:-}" ] && BROKER_CONFIG="serve_flags=--cores 1 $GROUP_BROKER_FLAGS"
        run_phase group-rebalance group-rebalance --members 10 --partitions 100 \
            --rounds "${GROUP_ROUNDS:-3}"
        run_phase group-commits group-commits --committers "${GROUP_COMMITTERS:-8}" --partitions 1 \
            --duration-secs "${GROUP_COMMIT_SECS:-10}"
    else
        log "groups skipped: broker did not print LISTENING within 30 s"; tail -20 "$group_log" >&2
    fi
    stop_broker
fi
# ---- end of consumer groups section ------------------------------------------------------------

log "summary ($RESULTS)"
"$BENCH_BIN" summarize --results-dir "$RESULTS"

# ---- Apache Kafka as the control (scripts/kafka-control.sh) ------------------------------------
# Kafka's own perf tools (kafka-producer-perf-test / kafka-consumer-perf-test) against Sluice and
# against a single-node KRaft Apache Kafka 4.1 on this machine, durable (log.flush.interval.messages=1)
# and with Kafka's defaults: 1 KiB and 100 B, acks=1 and acks=all, then a read of each. ~4 min;
# SKIP_KAFKA=1 leaves it out. Needs a JDK 17 and Maven (installed here with apt when missing);
# Kafka's jars are fetched once from Maven Central into ~/.cache/sluice-bench/. Its table goes to
# $RESULTS/kafka-control.md and is appended to summary.md. Knobs: KAFKA_RECORDS_1K (300000),
# KAFKA_RECORDS_100B (500000), KAFKA_BROKERS (see the header of scripts/kafka-control.sh).
if [ "${SKIP_KAFKA:-0}" != 1 ]; then
    need_java=()
    command -v java >/dev/null || need_java+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || need_java+=(maven)
    if ((${#need_java[@]})) && [ "$(id -u)" -eq 0 ]; then
        log "apt-get install ${need_java[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_java[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_java[@]}" >/dev/null; }
    fi
    # The broker stopped above; the control starts and stops its own (and its trap cleans up).
    if SKIP_BUILD=1 BROKER_BIN="$BROKER_BIN" DATA_PARENT="$DATA_PARENT" PHASE_TIMEOUT="$PHASE_TIMEOUT" \
        "$ROOT/scripts/kafka-control.sh" "$RESULTS"; then
        { echo; echo "Apache Kafka as the control (scripts/kafka-control.sh):"; echo; cat "$RESULTS/kafka-control.md"; } \
            >>"$RESULTS/summary.md"
    else
        log "kafka-control failed"
    fi
fi
# ---- end of Apache Kafka section ---------------------------------------------------------------

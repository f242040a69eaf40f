#!/usr/bin/env bash
# Apache Kafka 4.1 as the control: Kafka's own perf tools (kafka-producer-perf-test and
# kafka-consumer-perf-test, i.e. org.apache.kafka.tools.ProducerPerformance / ConsumerPerformance
# from kafka-tools) against Sluice and against a single-node KRaft Kafka 4.1 (combined broker and
# controller) on this machine, in one run, with the same clients and settings:
#   sluice         BROKER_BIN serve --cores 1: fsync (group commit) before acks=all is answered;
#                  acks=1 is answered once the O_DIRECT write is on the device
#   kafka-durable  Kafka with log.flush.interval.messages=1: fsync of every append before it is
#                  answered, whatever acks (the nearest Kafka setting to Sluice's acks=all)
#   kafka-default  Kafka's defaults: no fsync on the produce path (page cache only)
# Phases, against each broker in turn: produce 1 KiB and 100 B records with acks=1 and with
# acks=all (a fresh 2-partition topic each), then consume the two acks=1 topics from the start.
# Broker pinned to CPU 0, tools to CPU 1, as in scripts/bench.sh; broker CPU is utime+stime from
# /proc/<pid>/stat before and after each phase. Writes kafka-control.tsv (one line per phase)
# and kafka-control.md (the side-by-side table with ratios) into RESULTS_DIR.
#
# Kafka's jars come from Maven Central (versions pinned in scripts/kafka-control.pom.xml) through
# `mvn dependency:copy-dependencies`, cached in KAFKA_CACHE; nothing of Kafka is built or kept in
# this repository. Every process this script starts is stopped on exit, also on failure.
#
# Usage: scripts/kafka-control.sh [RESULTS_DIR]   (default target/bench-results/kafka-<UTC time>)
# Knobs (environment): KAFKA_RECORDS_1K=300000 KAFKA_RECORDS_100B=500000 PHASE_TIMEOUT=300
#   KAFKA_BROKERS="sluice kafka-durable kafka-default"  BROKER_BIN=target/release/sluice
#   DATA_PARENT=${TMPDIR:-/tmp}  KAFKA_CACHE=~/.cache/sluice-bench/kafka-<pom hash>
#   SKIP_BUILD=0 (1 uses BROKER_BIN as it is)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RESULTS=${1:-$ROOT/target/bench-results/kafka-$(date -u +%Y%m%dT%H%M%SZ)}
RECORDS_1K=${KAFKA_RECORDS_1K:-300000}
RECORDS_100B=${KAFKA_RECORDS_100B:-500000}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-300}
BROKERS=${KAFKA_BROKERS:-sluice kafka-durable kafka-default}
BROKER_BIN=${BROKER_BIN:-$ROOT/target/release/sluice}
DATA_PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
POM=$ROOT/scripts/kafka-control.pom.xml
KAFKA_CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench/kafka-$(sha256sum "$POM" | cut -c1-12)}
# Bounds on start-up and shutdown of either broker.
START_TIMEOUT_S=60
STOP_TIMEOUT_S=30
# The JVM options of Kafka's own scripts: kafka-server-start.sh for the broker, the perf-test
# scripts (-Xmx512M) for the tools.
KAFKA_JVM_OPTS=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true)

log() { printf '\n==> %s\n' "$*" >&2; }

# ---- tools, Kafka's jars, Sluice's build -----------------------------------------------------
for tool in java mvn taskset; do
    command -v "$tool" >/dev/null || { echo "kafka-control needs $tool (apt-get install openjdk-17-jdk-headless maven util-linux)" >&2; exit 1; }
done
# The jars: the one fetch-and-cache step, shared with the test suite (scripts/kafka-jars.sh).
KAFKA_LIBS=$(KAFKA_CACHE="$KAFKA_CACHE" scripts/kafka-jars.sh)
CLASSPATH_KAFKA="$KAFKA_LIBS/*"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p sluice"
    cargo build --release -p sluice
fi

mkdir -p "$RESULTS"
WORK=$(mktemp -d "$DATA_PARENT/sluice-kafka-control.XXXXXX")
BROKER_PID=""
TOOL_PID=""
cleanup() {
    for pid in $TOOL_PID $BROKER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    [ -n "$BROKER_PID" ] && stop_pid "$BROKER_PID"
    rm -rf "$WORK"
}
# stop_pid PID: waits up to STOP_TIMEOUT_S for PID (already sent SIGTERM), then SIGKILLs it.
stop_pid() {
    local pid=$1
    for _ in $(seq $((STOP_TIMEOUT_S * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "data_fs=$(findmnt -n -o SOURCE,FSTYPE -T "$WORK" 2>/dev/null || echo unknown)"
    echo "java=$(java -version 2>&1 | head -1)"
    echo "kafka_jars=$(basename "$KAFKA_CACHE"): $(cd "$KAFKA_CACHE/libs" && ls kafka_*.jar kafka-tools-*.jar | tr '\n' ' ')"
    echo "git_sha=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "git_dirty=$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo yes || echo no)"
    echo "records_1k=$RECORDS_1K records_100b=$RECORDS_100B brokers=$BROKERS"
} | tee "$RESULTS/kafka-control-machine.txt" >&2

# ---- brokers ---------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of the broker in seconds (fields 14 and 15); "dead" once it has exited.
broker_cpu() { awk -v hz="$CLK_TCK" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat" 2>/dev/null || echo dead; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

start_sluice() {
    local blog="$RESULTS/kafka-control-sluice.log"
    mkdir -p "$WORK/sluice"
    taskset -c 0 "$BROKER_BIN" serve --data-dir "$WORK/sluice" --listen 127.0.0.1:0 --override admin.listener=127.0.0.1:0 --cores 1 \
        --override group.initial.rebalance.delay.ms=0 >"$blog" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=""
    for _ in $(seq $((START_TIMEOUT_S * 10))); do
        BOOTSTRAP=$(sed -n 's/^LISTENING //p' "$blog" | head -1)
        [ -n "$BOOTSTRAP" ] && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "sluice did not print LISTENING within ${START_TIMEOUT_S}s; log:" >&2; tail -20 "$blog" >&2
    return 1
}

start_kafka() { # start_kafka durable|default
    local mode=$1 dir="$WORK/kafka-$1" blog="$RESULTS/kafka-control-kafka-$1.log"
    local port=$((30000 + RANDOM % 20000))
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=2
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    [ "$mode" = durable ] && echo "log.flush.interval.messages=1" >>"$dir/server.properties"
    local cluster_id
    cluster_id=$(java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CLASSPATH_KAFKA" \
        kafka.tools.StorageTool random-uuid | tail -1)
    java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CLASSPATH_KAFKA" kafka.tools.StorageTool \
        format -t "$cluster_id" -c "$dir/server.properties" >"$blog" 2>&1
    taskset -c 0 java -Xmx1G -Xms1G "${KAFKA_JVM_OPTS[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
        -cp "$CLASSPATH_KAFKA" kafka.Kafka "$dir/server.properties" >>"$blog" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=127.0.0.1:$port
    for _ in $(seq $((START_TIMEOUT_S * 10))); do
        grep -q 'Kafka Server started' "$blog" && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "kafka ($mode) did not start within ${START_TIMEOUT_S}s; log:" >&2; tail -20 "$blog" >&2
    return 1
}

stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    kill "$BROKER_PID" 2>/dev/null || true
    stop_pid "$BROKER_PID"
    BROKER_PID=""
}

# tool CLASS ARGS...: one of Kafka's tools on CPU 1, bounded by PHASE_TIMEOUT.
tool() {
    local class=$1; shift
    timeout "$PHASE_TIMEOUT" taskset -c 1 java -Xmx512M "${KAFKA_JVM_OPTS[@]}" \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CLASSPATH_KAFKA" "$class" "$@" &
    TOOL_PID=$!
    local status=0
    wait "$TOOL_PID" || status=$?
    TOOL_PID=""
    return "$status"
}

# ---- phases ----------------------------------------------------------------------------------
TSV="$RESULTS/kafka-control.tsv"
printf 'broker\tphase\trecords\tMB_s\tmsgs_s\tp50_ms\tp99_ms\tp999_ms\tbroker_cpu_s\tbroker_cpu_s_per_GB\tload_before\tload_after\n' >"$TSV"

# record BROKER PHASE RECORDS SIZE MB_S MSGS_S P50 P99 P999 CPU_S LOAD_BEFORE: one TSV line.
record() {
    local cpu_gb
    cpu_gb=$(awk -v c="${10}" -v n="$3" -v s="$4" 'BEGIN { printf "%.2f", c / (n * s / 1e9) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$5" "$6" "$7" "$8" "$9" \
        "${10}" "$cpu_gb" "${11}" "$(cut -d' ' -f1 /proc/loadavg)" >>"$TSV"
}

# produce BROKER TOPIC RECORDS SIZE ACKS
produce() {
    local broker=$1 topic=$2 n=$3 size=$4 acks=$5 out="$RESULTS/kafka-control-$1-$2.txt"
    local phase="produce $size B acks=$acks"
    log "$broker: $phase, $n records (kafka-producer-perf-test)"
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create --topic "$topic" \
        --partitions 2 --replication-factor 1 >"$out" 2>&1 || { log "$broker: create $topic failed"; cat "$out" >&2; return 0; }
    local load before after status=0
    load=$(cut -d' ' -f1 /proc/loadavg); before=$(broker_cpu)
    tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$n" --record-size "$size" \
        --throughput -1 --producer-props bootstrap.servers="$BOOTSTRAP" acks="$acks" >>"$out" 2>&1 || status=$?
    after=$(broker_cpu)
    tail -3 "$out" >&2
    if [ "$after" = dead ]; then
        log "$broker: the broker exited during $phase"; return 0
    fi
    # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, P50 ms 50th,
    #  P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
    local line
    line=$(sed -nE 's/^([0-9]+) records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), .* ([0-9]+) ms 50th, [0-9]+ ms 95th, ([0-9]+) ms 99th, ([0-9]+) ms 99.9th\.$/\1 \2 \3 \4 \5 \6/p' "$out" | tail -1)
    # shellcheck disable=SC2086 # line is deliberately word-split
    set -- $line
    if [ "$status" -ne 0 ] || [ "${1:-0}" != "$n" ]; then
        log "$broker: $phase failed (exit $status)"; return 0
    fi
    record "$broker" "$phase" "$n" "$size" "$3" "$2" "$4" "$5" "$6" "$(minus "$after" "$before")" "$load"
}

# consume BROKER TOPIC RECORDS SIZE
consume() {
    local broker=$1 topic=$2 n=$3 size=$4 out="$RESULTS/kafka-control-$1-$2-consume.txt"
    local phase="consume $size B"
    log "$broker: $phase, $n records (kafka-consumer-perf-test)"
    local load before after status=0
    load=$(cut -d' ' -f1 /proc/loadavg); before=$(broker_cpu)
    tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOTSTRAP" --topic "$topic" \
        --messages "$n" --timeout 10000 >"$out" 2>&1 || status=$?
    after=$(broker_cpu)
    tail -3 "$out" >&2
    if [ "$after" = dead ]; then
        log "$broker: the broker exited during $phase"; return 0
    fi
    # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms,
    # fetch.MB.sec, fetch.nMsg.sec: the fetch.* columns leave the group join out.
    local line
    line=$(awk -F', ' 'NF == 10 && $5 ~ /^[0-9]+$/ { print $5, $9, $10 }' "$out" | tail -1)
    # shellcheck disable=SC2086
    set -- $line
    if [ "$status" -ne 0 ] || [ "${1:-0}" != "$n" ]; then
        log "$broker: $phase failed (exit $status, ${1:-0} of $n records)"; return 0
    fi
    record "$broker" "$phase" "$n" "$size" "$2" "$3" "" "" "" "$(minus "$after" "$before")" "$load"
}

for broker in $BROKERS; do
    case $broker in
        sluice) start_sluice || { stop_broker; continue; } ;;
        kafka-durable) start_kafka durable || { stop_broker; continue; } ;;
        kafka-default) start_kafka default || { stop_broker; continue; } ;;
        *) echo "unknown broker $broker (sluice, kafka-durable, kafka-default)" >&2; exit 1 ;;
    esac
    log "$broker: pid $BROKER_PID on CPU 0, $BOOTSTRAP"
    produce "$broker" p1k-acks1 "$RECORDS_1K" 1024 1
    produce "$broker" p1k-acksall "$RECORDS_1K" 1024 all
    produce "$broker" p100-acks1 "$RECORDS_100B" 100 1
    produce "$broker" p100-acksall "$RECORDS_100B" 100 all
    consume "$broker" p1k-acks1 "$RECORDS_1K" 1024
    consume "$broker" p100-acks1 "$RECORDS_100B" 100
    stop_broker
done

# ---- summary ---------------------------------------------------------------------------------
# One row per phase; per broker MB/s (msgs/s), p99 ms, broker CPU s/GB; ratios Sluice / Kafka.
awk -F'\t' '
    NR == 1 { next }
    { key = $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      mb[$1, key] = $4; msgs[$1, key] = $5; p99[$1, key] = $7; cpu[$1, key] = $10 }
    function cell(b, k) { return ((b, k) in mb) ? sprintf("%.1f (%d)", mb[b, k], msgs[b, k]) : "not run" }
    function ratio(k, other) {
        return (("sluice", k) in mb && (other, k) in mb && mb[other, k] > 0) ? sprintf("%.2f", mb["sluice", k] / mb[other, k]) : "" }
    function trio(a, k) { return sprintf("%s / %s / %s", get(a, "sluice", k), get(a, "kafka-durable", k), get(a, "kafka-default", k)) }
    function get(a, b, k) { if (a == "p99") v = p99[b, k]; else v = cpu[b, k]; return (v == "" ? "-" : v) }
    END {
        print "| Phase | Sluice MB/s (msgs/s) | Kafka durable MB/s (msgs/s) | Kafka default MB/s (msgs/s) | Sluice ÷ Kafka durable | Sluice ÷ Kafka default | p99 ms: Sluice / Kafka durable / default | broker CPU s/GB: Sluice / Kafka durable / default |"
        print "|---|---:|---:|---:|---:|---:|---|---|"
        for (i = 1; i <= n; i++) { k = order[i]
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", k, cell("sluice", k), cell("kafka-durable", k),
                cell("kafka-default", k), ratio(k, "kafka-durable"), ratio(k, "kafka-default"), trio("p99", k), trio("cpu", k) }
    }' "$TSV" >"$RESULTS/kafka-control.md"
log "summary ($RESULTS/kafka-control.md)"
cat "$RESULTS/kafka-control.md"

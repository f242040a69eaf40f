#!/usr/bin/env bash
# A Sluice cluster on this machine in one command: N combined (broker+controller) nodes on
# 127.0.0.1, each from its own Kafka 4 style server.properties, data under CLUSTER_DIR.
#
#   scripts/cluster.sh start [N]   build (unless SLUICE_BIN is set), write configs, start N nodes (3)
#   scripts/cluster.sh stop        SIGTERM every node, wait for them to exit
#   scripts/cluster.sh status      which nodes run, and the bootstrap servers
#   scripts/cluster.sh kill ID     kill -9 one node (to try a failure)
#   scripts/cluster.sh restart ID  start one stopped or killed node again
#
# Node ID (1..N) listens for clients on 127.0.0.1:$((KAFKA_BASE_PORT + ID - 1)) and for the
# quorum on 127.0.0.1:$((CONTROLLER_BASE_PORT + ID - 1)). Knobs (environment):
#   CLUSTER_DIR=./cluster  KAFKA_BASE_PORT=9092  CONTROLLER_BASE_PORT=19092  CORES=1
#   SLUICE_BIN=target/release/sluice (built when unset)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/cluster}
KAFKA_BASE_PORT=${KAFKA_BASE_PORT:-9092}
CONTROLLER_BASE_PORT=${CONTROLLER_BASE_PORT:-19092}
CORES=${CORES:-1}
# Bound on a node's start (its LISTENING line) and on its exit after SIGTERM.
START_TIMEOUT_S=30
STOP_TIMEOUT_S=30

node_count() { ls -d "$CLUSTER_DIR"/node-* 2>/dev/null | wc -l; }
kafka_port() { echo $((KAFKA_BASE_PORT + $1 - 1)); }
controller_port() { echo $((CONTROLLER_BASE_PORT + $1 - 1)); }
bootstrap() {
    local n=$1 out=() i
    for ((i = 1; i <= n; i++)); do out+=("127.0.0.1:$(kafka_port "$i")"); done
    (IFS=,; echo "${out[*]}")
}
alive() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

binary() {
    if [ -n "${SLUICE_BIN:-}" ]; then
        echo "$SLUICE_BIN"
        return
    fi
    cargo build --release --bin sluice >&2
    echo "$ROOT/target/release/sluice"
}

write_config() {
    local id=$1 n=$2 dir=$3 voters=() i
    for ((i = 1; i <= n; i++)); do voters+=("$i@127.0.0.1:$(controller_port "$i")"); done
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<EOF
# Written by scripts/cluster.sh: node $id of a $n-node Sluice cluster (Kafka 4 KRaft names).
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$id"),CONTROLLER://127.0.0.1:$(controller_port "$id")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$id")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
admin.listener=127.0.0.1:0
EOF
}

start_node() {
    local bin=$1 id=$2 dir="$CLUSTER_DIR/node-$2"
    if alive "$dir"; then
        echo "node $id already runs (pid $(cat "$dir/pid"))"
        return
    fi
    : >"$dir/stdout"
    nohup "$bin" serve --config "$dir/server.properties" --cores "$CORES" \
        >"$dir/stdout" 2>>"$dir/stderr.log" </dev/null &
    echo $! >"$dir/pid"
    local waited=0
    until grep -q '^LISTENING ' "$dir/stdout" 2>/dev/null; do
        if ! alive "$dir"; then
            echo "node $id exited during start-up; the end of $dir/stderr.log:" >&2
            tail -20 "$dir/stderr.log" >&2
            exit 1
        fi
        if ((waited >= START_TIMEOUT_S * 10)); then
            echo "node $id printed no LISTENING line within ${START_TIMEOUT_S}s" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "node $id: pid $(cat "$dir/pid"), $(grep '^LISTENING ' "$dir/stdout"), $(grep '^ADMIN LISTENING ' "$dir/stdout"), log $dir/stderr.log"
}

stop_node() {
    local dir=$1 pid waited=0
    alive "$dir" || return 0
    pid=$(cat "$dir/pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT_S * 10)); then
            echo "pid $pid did not exit within ${STOP_TIMEOUT_S}s of SIGTERM; kill -9" >&2
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

case "${1:-}" in
start)
    n=${2:-3}
    bin=$(binary)
    mkdir -p "$CLUSTER_DIR"
    for ((i = 1; i <= n; i++)); do
        dir="$CLUSTER_DIR/node-$i"
        [ -f "$dir/server.properties" ] || write_config "$i" "$n" "$dir"
    done
    for ((i = 1; i <= n; i++)); do start_node "$bin" "$i"; done
    echo
    echo "bootstrap servers: $(bootstrap "$n")"
    echo "try: kcat -b $(bootstrap "$n") -L"
    ;;
stop)
    for dir in "$CLUSTER_DIR"/node-*; do [ -d "$dir" ] && stop_node "$dir"; done
    echo "stopped"
    ;;
status)
    n=$(node_count)
    for ((i = 1; i <= n; i++)); do
        dir="$CLUSTER_DIR/node-$i"
        if alive "$dir"; then echo "node $i: running (pid $(cat "$dir/pid"))"; else echo "node $i: down"; fi
    done
    echo "bootstrap servers: $(bootstrap "$n")"
    ;;
kill)
    dir="$CLUSTER_DIR/node-${2:?node id}"
    alive "$dir" && kill -9 "$(cat "$dir/pid")" && echo "node $2 killed (-9)"
    ;;
restart)
    dir="$CLUSTER_DIR/node-${2:?node id}"
    stop_node "$dir"
    start_node "$(binary)" "$2"
    ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

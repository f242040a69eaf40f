#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently), builds, and runs every suite:
# the Rust unit and integration tests (cargo test --workspace), then the Python client tests.
# Works on a fresh Debian machine as root. Exits non-zero if anything fails.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n==> %s\n' "$*" >&2; }

# ---- system packages -------------------------------------------------------------------------
# kcat: the CLI client tests/kcat.rs drives. python3-venv: for .venv below.
# make, gcc, g++: rdkafka-sys builds librdkafka (and zstd-sys libzstd) from source with them; its
# features in use (libz, zstd) need no other system library.
need_apt=()
command -v kcat >/dev/null || need_apt+=(kcat)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v make >/dev/null || need_apt+=(make)
command -v cc >/dev/null || need_apt+=(gcc)
command -v g++ >/dev/null || need_apt+=(g++)
# iproute2: tests/partition_netns.rs makes network namespaces, veths and a bridge with `ip`.
command -v ip >/dev/null || need_apt+=(iproute2)
if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need_apt[*]}; install them (as root: apt-get install -y ${need_apt[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ---- Python clients --------------------------------------------------------------------------
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
# A stamp of the requirements installed, so a second run does not touch the network.
STAMP="$VENV/.sluice-requirements"
if ! cmp -s tests/python/requirements.txt "$STAMP"; then
    log "pip install -r tests/python/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
    cp tests/python/requirements.txt "$STAMP"
fi

# ---- Node clients ----------------------------------------------------------------------------
# kafkajs for tests/kafkajs.rs, pinned by tests/node/package-lock.json.
NODE_STAMP="tests/node/node_modules/.sluice-package-lock"
if [ ! -d tests/node/node_modules ] || ! cmp -s tests/node/package-lock.json "$NODE_STAMP"; then
    log "npm ci --prefix tests/node"
    npm ci --prefix tests/node --no-audit --no-fund
    cp tests/node/package-lock.json "$NODE_STAMP"
fi

# ---- Java client -----------------------------------------------------------------------------
# A JDK and Maven for tests/java_client.rs, which runs tests/java's jar (kafka-clients, pinned in
# tests/java/pom.xml). The jar is built here so the download from Maven Central happens in the
# test command; offline first, since ~/.m2 keeps every artifact after the first build.
need_java=()
command -v java >/dev/null || need_java+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_java+=(maven)
if ((${#need_java[@]})); then
    log "apt-get install ${need_java[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need_java[*]}; install them (as root: apt-get install -y ${need_java[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_java[@]}" >/dev/null
fi
log "mvn package (tests/java)"
(cd tests/java && { mvn -B -q -o package 2>/dev/null || mvn -B -q package; })

# ---- Kafka's jars ----------------------------------------------------------------------------
# Apache Kafka 4.1's jars (pinned in scripts/kafka-control.pom.xml) for tests/kafka_tools.rs, which
# runs Kafka's own tools (kafka-dump-log on Sluice's segment files; kafka-topics, kafka-configs,
# kafka-consumer-groups against the broker). Fetched here, into the cache scripts/kafka-control.sh
# uses, so that cargo test does not download; does nothing once the cache is complete.
log "Kafka's jars (scripts/kafka-jars.sh)"
scripts/kafka-jars.sh >/dev/null

# ---- Go client -------------------------------------------------------------------------------
# Go 1.26+ (franz-go's minimum; Debian's golang-go is older) for tests/go_client.rs, which builds
# tests/go (franz-go, pinned in tests/go/go.mod and go.sum). The modules are downloaded here so
# cargo test needs no network; `go mod download` only checks the module cache once they are in it.
# The build fills Go's build cache (a first build compiles franz-go's codecs: ~1-2 min on 2 cores),
# so the test's own `go build` is a cache hit and the Go tests stay within their time.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
fi
if ! command -v go >/dev/null; then
    echo "missing go: the franz-go tests need Go 1.26+ on PATH (install the official release in /usr/local/go)" >&2
    exit 1
fi
log "go mod download (tests/go, $(go env GOVERSION))"
(cd tests/go && GOTOOLCHAIN=local go mod download && GOTOOLCHAIN=local go build -buildvcs=false -o /dev/null .)

# ---- Rust ------------------------------------------------------------------------------------
# Each broker under test runs 2 shards (--cores 2) on a 2-core machine: two test threads keep
# the machine busy without starving brokers of CPU into client timeouts.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

status=0
log "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

log "cargo test --workspace --no-fail-fast"
cargo_log=$(mktemp)
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$cargo_log"
cargo_status=${PIPESTATUS[0]}
set -e
[ "$cargo_status" -eq 0 ] || status=1

# ---- Python client tests ---------------------------------------------------------------------
log "pytest tests/python"
export SLUICE_BIN="${SLUICE_BIN:-$ROOT/target/debug/sluice}"
pytest_log=$(mktemp)
set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python 2>&1 | tee "$pytest_log"
pytest_status=${PIPESTATUS[0]}
set -e
[ "$pytest_status" -eq 0 ] || status=1

# ---- summary ---------------------------------------------------------------------------------
log "summary"
echo "cargo test (exit $cargo_status):"
grep -E '^test result:' "$cargo_log" | sed 's/^/  /' || true
echo "pytest (exit $pytest_status):"
pytest_line=$(grep -E '^=*\s*[0-9]+ (passed|failed|error)|no tests ran' "$pytest_log" | tail -1 || true)
echo "  ${pytest_line:-<no pytest summary line>}"
count() { # count WORD FILE: sum of the numbers before WORD on summary lines
    { grep -oE "[0-9]+ $1" "$2" || true; } | awk '{ n += $1 } END { print n + 0 }'
}
cargo_summary=$(grep -E '^test result:' "$cargo_log" || true)
passed=$(( $(count passed <(echo "$cargo_summary")) + $(count passed <(echo "$pytest_line")) ))
failed=$(( $(count failed <(echo "$cargo_summary")) + $(count failed <(echo "$pytest_line")) \
           + $(count error <(echo "$pytest_line")) ))
rm -f "$cargo_log" "$pytest_log"
# A failure that produced no summary (build error, crash) still fails the run.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "Total: $passed passed, $failed failed"
exit "$status"

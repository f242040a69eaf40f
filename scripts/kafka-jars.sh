#!/usr/bin/env bash
# Fetches Apache Kafka's jars (versions pinned in scripts/kafka-control.pom.xml) into the cache
# scripts/kafka-control.sh uses, unless they are there already, and prints the directory that
# holds them (use it as the classpath "<dir>/*"). Idempotent: a complete cache is marked with
# libs/.complete and never touched again; offline (~/.m2) first, then Maven Central.
# Used by scripts/test.sh so that tests/kafka_tools.rs finds the jars without downloading.
# Knobs (environment): KAFKA_CACHE=~/.cache/sluice-bench/kafka-<pom hash> (as kafka-control.sh)
set -euo pipefail

cd "$(dirname "$0")/.."
POM=$(pwd)/scripts/kafka-control.pom.xml
KAFKA_CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench/kafka-$(sha256sum "$POM" | cut -c1-12)}
if [ ! -e "$KAFKA_CACHE/libs/.complete" ]; then
    command -v mvn >/dev/null || { echo "kafka-jars needs mvn (apt-get install maven)" >&2; exit 1; }
    echo "fetching Kafka's jars ($POM) into $KAFKA_CACHE" >&2
    rm -rf "$KAFKA_CACHE/libs.partial"
    mkdir -p "$KAFKA_CACHE"
    fetch() { mvn -B -q "$@" -f "$POM" dependency:copy-dependencies -DoutputDirectory="$KAFKA_CACHE/libs.partial" >&2; }
    fetch -o 2>/dev/null || fetch
    touch "$KAFKA_CACHE/libs.partial/.complete"
    rm -rf "$KAFKA_CACHE/libs"
    mv "$KAFKA_CACHE/libs.partial" "$KAFKA_CACHE/libs"
fi
echo "$KAFKA_CACHE/libs"

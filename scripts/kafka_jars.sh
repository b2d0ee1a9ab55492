#!/usr/bin/env bash
# usage: scripts/kafka_jars.sh [KAFKA_VERSION]  -> prints the folder holding the broker jars.
# Fetches the real Apache Kafka broker from Maven Central once; Maven's cache is ~/.m2.
set -euo pipefail
KAFKA_VERSION="${1:-${KAFKA_VERSION:-3.9.1}}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/kafka/$KAFKA_VERSION/libs"          # .cache/ is git-ignored
if [ -f "$DEST/.complete" ]; then echo "$DEST"; exit 0; fi
case "$KAFKA_VERSION" in 3.*) PROFILE=kafka3 ;; *) PROFILE=kafka4 ;; esac
rm -rf "$DEST"; mkdir -p "$DEST"
echo "fetching Kafka $KAFKA_VERSION jars from Maven Central (first run only)..." >&2
mvn -B -q -f "$ROOT/tools/kafka/pom.xml" -P "$PROFILE" -Dkafka.version="$KAFKA_VERSION" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$DEST" >&2
ls "$DEST" | grep -q '^kafka_2\.13-' || { echo "kafka_2.13 jar missing in $DEST" >&2; exit 1; }
n=$(ls "$DEST" | grep -cE '^(slf4j-reload4j|log4j-slf4j-impl|log4j-slf4j2-impl|logback-classic|slf4j-simple)-' || true)
[ "$n" = 1 ] || { echo "expected exactly one SLF4J binding in $DEST, found $n" >&2; exit 1; }
touch "$DEST/.complete"
echo "$DEST"

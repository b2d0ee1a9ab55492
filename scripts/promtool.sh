#!/usr/bin/env bash
# usage: scripts/promtool.sh  -> prints the path of Prometheus' promtool binary.
# promtool (Apache-2.0, github.com/prometheus/prometheus/cmd/promtool) checks and unit-tests
# deploy/prometheus/ (tests/unit/test_monitoring.py); built once from the Go module proxy
# (several minutes on 2 cores; Go's module and build caches make a rebuild quick).
# Prometheus' Go module versions are v0.3MM.P for Prometheus 3.MM.P: v0.316.0 is 3.16.0.
set -euo pipefail
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/promtool/$PROMETHEUS_VERSION"           # .cache/ is git-ignored
if [ -x "$DEST/promtool" ]; then echo "$DEST/promtool"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "missing go: install Go 1.24 or newer" >&2; exit 1; }
echo "building promtool $PROMETHEUS_VERSION from the Go module proxy (first run only)..." >&2
mkdir -p "$ROOT/.cache/promtool"
# into a temporary folder first: a failed or interrupted build leaves nothing behind
TMP="$(mktemp -d "$ROOT/.cache/promtool/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
GOBIN="$TMP" GOFLAGS=-mod=mod go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
mkdir -p "$DEST"
mv "$TMP/promtool" "$DEST/promtool"
echo "$DEST/promtool"

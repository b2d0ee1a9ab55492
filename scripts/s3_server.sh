#!/usr/bin/env bash
# usage: scripts/s3_server.sh  -> prints the path of the S3-compatible server's binary.
# Versity's S3 gateway (Apache-2.0, github.com/versity/versitygw) serves the S3 API over a
# plain folder: a real S3 server for the tests and the single-host deployments, built once
# from the Go module proxy; Go's module and build caches make a rebuild quick.
set -euo pipefail
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/s3/$VERSITYGW_VERSION"                 # .cache/ is git-ignored
if [ -x "$DEST/versitygw" ]; then echo "$DEST/versitygw"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "missing go: install Go 1.24 or newer" >&2; exit 1; }
echo "building versitygw $VERSITYGW_VERSION from the Go module proxy (first run only)..." >&2
mkdir -p "$DEST"
GOBIN="$DEST" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2
echo "$DEST/versitygw"

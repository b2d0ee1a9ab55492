#!/usr/bin/env bash
# usage: scripts/go_tool.sh NAME PACKAGE VERSION [GO_LDFLAGS]  -> prints the path of the binary.
# Builds a tool published as a Go module (`go install PACKAGE@VERSION`) once, from the Go module
# proxy, into .cache/NAME/VERSION/ (git-ignored); Go's module and build caches make a rebuild
# quick. It builds into a temporary folder first, so a failed build leaves nothing behind.
set -euo pipefail
NAME="$1" PACKAGE="$2" VERSION="$3" LDFLAGS="${4:-}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/$NAME/$VERSION"
if [ -x "$DEST/$NAME" ]; then echo "$DEST/$NAME"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "missing go: install Go 1.26 or newer" >&2; exit 1; }
echo "building $NAME $VERSION from the Go module proxy (first run only)..." >&2
mkdir -p "$ROOT/.cache/$NAME"
TMP="$(mktemp -d "$ROOT/.cache/$NAME/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
GOBIN="$TMP" GOFLAGS=-mod=mod go install ${LDFLAGS:+-ldflags "$LDFLAGS"} "$PACKAGE@$VERSION" >&2
mkdir -p "$DEST"
mv "$TMP"/* "$DEST/$NAME"                                  # the one binary go install wrote
echo "$DEST/$NAME"

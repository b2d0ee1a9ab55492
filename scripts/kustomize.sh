#!/usr/bin/env bash
# usage: scripts/kustomize.sh  -> prints the path of the kustomize binary.
# The real kustomize (Apache-2.0, sigs.k8s.io/kustomize), which tests/unit/test_deploy.py runs
# (`kustomize build k8s/base`, `k8s/overlays/small`): built once from the Go module proxy into
# .cache/kustomize/<version>/; Go's module and build caches make a rebuild quick.
# v5.8.2 is the release that brings sigs.k8s.io/kustomize/api v0.21.2 and builds with Go 1.26.
set -euo pipefail
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/kustomize/$KUSTOMIZE_VERSION"         # .cache/ is git-ignored
if [ -x "$DEST/kustomize" ]; then echo "$DEST/kustomize"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "missing go: install Go 1.26 or newer" >&2; exit 1; }
echo "building kustomize $KUSTOMIZE_VERSION from the Go module proxy (first run only)..." >&2
mkdir -p "$DEST"
GOBIN="$DEST" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
echo "$DEST/kustomize"

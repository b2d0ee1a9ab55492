#!/usr/bin/env bash
# usage: scripts/helm.sh  -> prints the path of the helm binary.
# The real Helm (Apache-2.0, helm.sh/helm), which tests/unit/test_deploy.py runs (`helm lint`,
# `helm template deploy/helm/openpersonalize`): built once from the Go module proxy into
# .cache/helm/<version>/; Go's module and build caches make a rebuild quick.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cache/helm/$HELM_VERSION"                   # .cache/ is git-ignored
if [ -x "$DEST/helm" ]; then echo "$DEST/helm"; exit 0; fi
command -v go >/dev/null 2>&1 || { echo "missing go: install Go 1.26 or newer" >&2; exit 1; }
echo "building helm $HELM_VERSION from the Go module proxy (first run only)..." >&2
mkdir -p "$DEST"
MAJOR="${HELM_VERSION%%.*}"                               # v4 (or v3: HELM_VERSION=v3.21.4)
# `helm version` reports the release (a plain go install would not stamp it)
GOBIN="$DEST" GOFLAGS=-mod=mod go install -ldflags "-X helm.sh/helm/$MAJOR/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/$MAJOR/cmd/helm@$HELM_VERSION" >&2
echo "$DEST/helm"

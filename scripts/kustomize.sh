#!/usr/bin/env bash
# usage: scripts/kustomize.sh  -> prints the path of the kustomize binary.
# The real kustomize (Apache-2.0, sigs.k8s.io/kustomize), which tests/unit/test_deploy.py runs
# (`kustomize build k8s/base`, `k8s/overlays/small`); v5.8.2 brings kustomize/api v0.21.2.
set -euo pipefail
exec "$(dirname "$0")/go_tool.sh" kustomize sigs.k8s.io/kustomize/kustomize/v5 "${KUSTOMIZE_VERSION:-v5.8.2}"

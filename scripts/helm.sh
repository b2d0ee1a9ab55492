#!/usr/bin/env bash
# usage: scripts/helm.sh  -> prints the path of the helm binary.
# The real Helm (Apache-2.0, helm.sh/helm), which tests/unit/test_deploy.py runs (`helm lint`,
# `helm template deploy/helm/openpersonalize`); the version is stamped so `helm version` reports it.
set -euo pipefail
VERSION="${HELM_VERSION:-v4.3.2}"
MAJOR="${VERSION%%.*}"                                    # v4 (or v3: HELM_VERSION=v3.21.4)
exec "$(dirname "$0")/go_tool.sh" helm "helm.sh/helm/$MAJOR/cmd/helm" "$VERSION" \
  "-X helm.sh/helm/$MAJOR/internal/version.version=$VERSION"

#!/usr/bin/env bash
# usage: scripts/promtool.sh  -> prints the path of the promtool binary.
# Prometheus's promtool (Apache-2.0), which tests/unit/test_monitoring.py runs on
# deploy/prometheus/ (`check rules`, `check config`, `test rules`); the first build takes minutes.
set -euo pipefail
exec "$(dirname "$0")/go_tool.sh" promtool github.com/prometheus/prometheus/cmd/promtool \
  "${PROMETHEUS_VERSION:-v0.316.0}"

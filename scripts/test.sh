#!/usr/bin/env bash
# The README's test command does everything: system deps, venv, Kafka jars, services, tests.
# Unit tests first (no services); then integration and end-to-end against the real Kafka
# broker, Redis and PostgreSQL that scripts/services.py starts and, on exit, stops; then the JS SDK's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system_deps.sh
make -s venv
scripts/kafka_jars.sh >/dev/null
# the real tools the deploy checks run (built once from the Go module proxy into .cache/)
scripts/kustomize.sh >/dev/null && scripts/helm.sh >/dev/null && scripts/promtool.sh >/dev/null
PY=.venv/bin/python
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
$PY -m pytest tests/unit -q "$@"
$PY scripts/services.py stop >/dev/null 2>&1 || true
trap '$PY scripts/services.py stop' EXIT
$PY scripts/services.py start
set -a; eval "$($PY scripts/services.py env)"; set +a
$PY -m pytest tests/integration tests/e2e -q "$@"
# the JS SDK: unit, Node e2e (our SDK and AWS SDK v3) and chromium against a real server
sdk/js/scripts/test.sh

#!/usr/bin/env bash
# Every test of the JS SDK, from a fresh checkout: dependencies (npm ci when node_modules is
# missing or older than package-lock.json; Debian's chromium via apt only if it is missing),
# build, declaration check, unit tests, end-to-end tests against a real `personalize serve`
# (our SDK, the AWS SDK v3, chromium on the demo page), the bundle size, and the package as npm
# would publish it (npm pack from a clean copy, checked by publint and @arethetypeswrong/cli).
#
# The server runs from the repo root with OPZ_PYTHON (default: ../../.venv/bin/python, the
# repo's venv, relative to sdk/js). OPZ_CHROMIUM overrides /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

PY=${OPZ_PYTHON:-../../.venv/bin/python}
case $PY in /*) ;; *) PY=$PWD/$PY ;; esac
if [ ! -x "$PY" ]; then
  echo "sdk/js: no Python at $PY: create the repo's venv (make venv) or set OPZ_PYTHON" >&2
  exit 1
fi
export OPZ_PYTHON=$PY

CHROMIUM=${OPZ_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "sdk/js: installing Debian's chromium (apt-get)"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f node_modules/.opz-installed ] || [ package-lock.json -nt node_modules/.opz-installed ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.opz-installed
fi

node scripts/build.mjs
node node_modules/typescript/bin/tsc -p test/types/tsconfig.json
echo "== unit"
node --test --test-reporter=spec --disable-warning=ExperimentalWarning test/unit/
echo "== end-to-end (real server; AWS SDK v3; chromium)"
node --test --test-reporter=spec --test-concurrency=1 test/e2e/
echo "== bundle size"
node scripts/size.mjs
echo "== package (npm pack from a clean copy; publint; @arethetypeswrong/cli)"
node scripts/check-package.mjs
echo "sdk/js: all green in $((SECONDS - start)) s"

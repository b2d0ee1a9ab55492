#!/usr/bin/env bash
# Installs what pip cannot: Debian's redis-server, postgresql and chromium (and wrk with `bench`). Java 17 and Maven are
# on our machines; say so loudly if they are not. Idempotent and quiet when everything is there.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  echo "installing redis-server (Debian package) ..." >&2
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
  # the package starts a system-wide instance on 6379; ours run on their own ports
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
# PostgreSQL's initdb and postgres: on PATH, or in Debian's /usr/lib/postgresql/<major>/bin
# (scripts/services.py looks in both; it starts throwaway clusters of its own)
pg_missing() {
  for tool in initdb postgres; do
    command -v "$tool" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$tool" >/dev/null || return 0
  done
  return 1
}
if pg_missing; then
  echo "installing postgresql (Debian package) ..." >&2
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  # the package starts a system-wide cluster on 5432; ours run on their own ports
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
  $SUDO pg_ctlcluster --force "$(ls /usr/lib/postgresql | sort -n | tail -1)" main stop >/dev/null 2>&1 || true
fi
# Debian's chromium: the browser tests/e2e/test_console.py drives through Playwright (never the
# browsers `playwright install` downloads); OPZ_CHROMIUM names another
if [ ! -x "${OPZ_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "installing chromium (Debian package, for the console's browser tests) ..." >&2
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2
fi
if [ "${1:-}" = bench ] && ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package, the benchmarks' load generator) ..." >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >&2
fi
for tool in java mvn go; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: install Java 17, Maven and Go (the S3-compatible store is built with it)" >&2; exit 1; }
done

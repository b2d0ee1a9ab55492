#!/usr/bin/env bash
# usage: scripts/s3_server.sh  -> prints the path of the S3-compatible server's binary.
# Versity's S3 gateway (Apache-2.0, github.com/versity/versitygw) serves the S3 API over a
# plain folder: a real S3 server for the tests and the single-host deployments.
set -euo pipefail
exec "$(dirname "$0")/go_tool.sh" versitygw github.com/versity/versitygw/cmd/versitygw \
  "${VERSITYGW_VERSION:-v1.8.0}"

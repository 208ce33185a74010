#!/usr/bin/env bash
# Runs the s3:// store suite against a real S3 server on 127.0.0.1:
# DP_TEST_S3_SERVER=s3rver (default; installed into tests/store/node_modules
# with npm ci if needed) or swift (Debian's Swift with s3api, run-swift.sh);
# see server.sh. Starts it on a free port with a fresh directory, runs the
# given test binary with DP_TEST_S3_ENDPOINT set, and stops every server it
# (or a test) started.
# Usage: run-tests.sh TEST_BINARY [criterion args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 TEST_BINARY [args...]" >&2; exit 2; }
# shellcheck source=tests/store/server.sh
. "$here/server.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-store-test.XXXXXX")
export DP_TEST_S3_PIDDIR=$work
cleanup() {
  for f in "$work"/*.pid; do
    server_stop "$f"
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
read -r port pid dir < <(bash "$server_script" -d "$work/s3" -b dp-test)
[ -n "${port:-}" ] || { echo "run-tests: $server did not start" >&2; exit 1; }
echo "run-tests: $server pid $pid on 127.0.0.1:$port, data in $dir" >&2
export DP_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
"$@"

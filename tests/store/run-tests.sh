#!/usr/bin/env bash
# Runs the s3:// store suite against a real s3rver on 127.0.0.1: installs
# s3rver into tests/store/node_modules if needed (npm ci), starts it on a free
# port with a fresh directory, runs the given test binary with
# DP_TEST_S3_ENDPOINT set, and stops every server it (or a test) started.
# Usage: run-tests.sh TEST_BINARY [criterion args...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 TEST_BINARY [args...]" >&2; exit 2; }
if [ ! -x "$here/node_modules/.bin/s3rver" ]; then
  echo "run-tests: installing s3rver (npm ci --prefix $here)" >&2
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-store-test.XXXXXX")
export DP_TEST_S3_PIDDIR=$work
cleanup() {
  for f in "$work"/*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
read -r port pid dir < <(bash "$here/run-s3rver.sh" -d "$work/s3" -b dp-test)
[ -n "${port:-}" ] || { echo "run-tests: s3rver did not start" >&2; exit 1; }
echo "run-tests: s3rver pid $pid on 127.0.0.1:$port, data in $dir" >&2
export DP_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
"$@"

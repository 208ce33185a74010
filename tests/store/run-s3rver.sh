#!/usr/bin/env bash
# Starts s3rver (tests/store/node_modules) on 127.0.0.1 in the background and
# waits until it answers. Prints one line: "PORT PID DIR".
# Usage: run-s3rver.sh [-p PORT] [-d DIR] [-b BUCKET]
#   -p  port (default: a free one)   -d  data directory (default: a new mktemp -d)
#   -b  bucket created at start (default: dp-test)
# PID is also written to DIR.pids and, if DP_TEST_S3_PIDDIR is set, to
# $DP_TEST_S3_PIDDIR/PID.pid, so a driver can stop every server it started
# (the same files as run-swift.sh's). The server's log goes to DIR.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=0 dir= bucket=dp-test
while getopts p:d:b: o; do
  case $o in
    p) port=$OPTARG ;;
    d) dir=$OPTARG ;;
    b) bucket=$OPTARG ;;
    *) echo "usage: $0 [-p PORT] [-d DIR] [-b BUCKET]" >&2; exit 2 ;;
  esac
done
bin=$here/node_modules/.bin/s3rver
[ -x "$bin" ] || { echo "run-s3rver: $bin missing; run: npm ci --prefix $here" >&2; exit 1; }
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/dp-s3rver.XXXXXX")
mkdir -p "$dir"
# below the ephemeral range: a server started again on its port after a
# kill finds it free (tests/lib/free-port.py)
[ "$port" = 0 ] && port=$("$here/../lib/free-port.py")
# s3rver 3.7 makes ListObjectsV2 continuation tokens with DES, which Node 17+
# (OpenSSL 3) only offers through the legacy provider.
# s3rver-uploads.js adds what s3rver lacks of multipart uploads: listing and
# aborting them, and NoSuchUpload for an unknown upload ID.
# setsid: the server does not share the caller's process group or terminal.
NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--openssl-legacy-provider --require $here/s3rver-uploads.js" \
setsid "$bin" -d "$dir" -a 127.0.0.1 -p "$port" --silent --configure-bucket "$bucket" \
  </dev/null >"$dir.log" 2>&1 &
pid=$!
echo "$pid" >"$dir.pids"
[ -n "${DP_TEST_S3_PIDDIR:-}" ] && echo "$pid" >"$DP_TEST_S3_PIDDIR/$pid.pid"
for _ in $(seq 1 200); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "$port $pid $dir"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
echo "run-s3rver: s3rver did not come up on 127.0.0.1:$port; log:" >&2
cat "$dir.log" >&2 || true
kill "$pid" 2>/dev/null || true
exit 1

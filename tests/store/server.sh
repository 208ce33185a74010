# Which S3 server the store's tests and bench/bench_store.sh run against,
# sourced by run-tests.sh, faults.sh and the benchmark. DP_TEST_S3_SERVER:
#   s3rver (default)  s3rver 3.7.1 from npm (tests/store/node_modules), with
#                     s3rver-uploads.js; no signature checks
#   swift             OpenStack Swift from Debian (tests/store/PACKAGES) with
#                     s3api and tempauth: checks SigV4 signatures and Content-MD5,
#                     implements ListParts, ListMultipartUploads and abort
# Sets: server (the name), server_script (its run-*.sh: -p PORT -d DIR -b
# BUCKET, prints "PORT PID DIR"), and exports AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and DP_TEST_S3_SERVER (the test binary reads them).
# shellcheck shell=bash
store_tests=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=${DP_TEST_S3_SERVER:-s3rver}
case $server in
  s3rver)
    server_script=$store_tests/run-s3rver.sh
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
    if [ ! -x "$store_tests/node_modules/.bin/s3rver" ]; then
      echo "installing s3rver (npm ci --prefix $store_tests)" >&2
      npm ci --prefix "$store_tests" --no-audit --no-fund --loglevel=error >&2
    fi
    ;;
  swift)
    server_script=$store_tests/run-swift.sh
    # tempauth's user test:tester (run-swift.sh)
    export AWS_ACCESS_KEY_ID=test:tester AWS_SECRET_ACCESS_KEY=testing
    ;;
  *)
    echo "DP_TEST_S3_SERVER=$server: expects s3rver or swift" >&2
    exit 2
    ;;
esac
export DP_TEST_S3_SERVER=$server
# server_stop FILE [SIGNAL]: stops every process listed in FILE (a DIR.pids or
# $DP_TEST_S3_PIDDIR/PID.pid of the scripts), each with its process group.
server_stop() {
  local p
  [ -e "$1" ] || return 0
  while read -r p; do
    kill -s "${2:-TERM}" -- -"$p" 2>/dev/null || kill -s "${2:-TERM}" "$p" 2>/dev/null || true
  done <"$1"
}
# server_gone FILE: waits (up to 5 s) until no process listed in FILE is left
server_gone() {
  local p
  for _ in $(seq 1 100); do
    local left=0
    while read -r p; do # a zombie (nobody reaps it here) is gone too
      [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && left=1
    done <"$1"
    [ $left = 0 ] && return 0
    sleep 0.05
  done
  return 1
}

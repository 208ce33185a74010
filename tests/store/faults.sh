#!/usr/bin/env bash
# The store under real faults, through dp-store against a real S3 server on
# 127.0.0.1: DP_TEST_S3_SERVER=s3rver (default; with s3rver-uploads.js, so
# unfinished uploads can be listed through the API) or swift (Swift's s3api,
# run-swift.sh); see server.sh. "The server" is every process of it:
#   - the server SIGKILLed during a multipart put and back 10 s later on the
#     same port and directory: the put completes with the default settings;
#   - the server gone longer than --retry-for: exit 1, no object; back before
#     the abort's own retries end: no unfinished upload; never back: the
#     message names the upload ID and the command that removes it, which works;
#   - dp-store killed by SIGINT or SIGTERM during a multipart put: 130/143,
#     no object, no unfinished upload; by SIGKILL: the upload is left and
#     `dp-store uploads abort` removes it; the same put run again continues
#     the upload a SIGKILL left once 3 parts were stored (Swift: ListParts),
#     sending only what is missing;
#   - get killed by SIGINT, SIGTERM, SIGKILL and timeout(1): no temporary
#     file once the next get to the same destination is done;
#   - the server killed during a get and back 3 s later: the get completes.
# Usage: faults.sh DP_STORE_BINARY
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: faults.sh DP_STORE_BINARY}
[ -x "$bin" ] || { echo "faults: $bin is not executable" >&2; exit 1; }
# shellcheck source=tests/store/server.sh
. "$here/server.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-store-faults.XXXXXX")
export DP_TEST_S3_PIDDIR=$work
cleanup() {
  for f in "$work"/*.pid; do server_stop "$f" KILL; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r port spid _ < <(bash "$server_script" -d "$work/s3" -b faults)
[ -n "${port:-}" ] || { echo "faults: $server did not start" >&2; exit 1; }
export DP_STORE_ENDPOINT=http://127.0.0.1:$port
# "gone longer than --retry-for": the server is started again once the parts
# have given up, and must be up before the abort's own retries (another
# --retry-for) end; Swift takes up to ~12 s to start on a loaded core
gone_retry=4 gone_back=6
[ "$server" = swift ] && gone_retry=20 gone_back=21
passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check WHAT COND...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
server_kill() { # every process of the server, gone before this returns
  server_stop "$work/$spid.pid" KILL
  server_gone "$work/$spid.pid"
  rm -f "$work/$spid.pid"
}
server_start() {
  read -r port spid _ < <(bash "$server_script" -p "$port" -d "$work/s3" -b faults)
  [ -n "${spid:-}" ] || { echo "faults: $server did not restart" >&2; exit 1; }
}
# waits (up to 20 s) until a put run with -v has started its multipart upload
upload_started() { # LOG
  for _ in $(seq 1 400); do grep -q "multipart s3://.*: upload " "$1" && return 0; sleep 0.05; done
  return 1
}
uploads() { "$bin" uploads ls s3://faults/; }
no_uploads() { [ -z "$(uploads)" ]; }
no_object() { "$bin" stat "s3://faults/$1" >/dev/null 2>&1; [ $? = 3 ]; }
same_object() { "$bin" get "s3://faults/$1" - | cmp -s - "$2"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

head -c $((200 << 20)) /dev/urandom >"$work/big" # 25 parts of 8 MiB

echo "== $server killed during a multipart put, back after 10 s"
"$bin" put "$work/big" s3://faults/restart 2>"$work/restart.err" &
p=$!
sleep 0.5
server_kill
t0=$(now)
sleep 10
server_start
wait $p
rc=$?
echo "   put exited $rc, $(since "$t0") s after the kill"
check "put completes (exit 0) with the default settings" [ $rc = 0 ]
check "the put retried while the server was down" grep -q "retry" "$work/restart.err"
check "the object is the file" same_object restart "$work/big"
check "no unfinished upload left" no_uploads

echo "== $server gone longer than --retry-for $gone_retry, started again at $gone_back s"
"$bin" --retry-for $gone_retry put "$work/big" s3://faults/gone 2>"$work/gone.err" &
p=$!
sleep 0.5
server_kill
t0=$(now)
sleep $gone_back
server_start
wait $p
rc=$?
echo "   put exited $rc after $(since "$t0") s"
check "put fails with exit 1" [ $rc = 1 ]
check "it says it gave up" grep -q "gave up after" "$work/gone.err"
check "no object" no_object gone
check "no unfinished upload (the abort retried until the server came back)" no_uploads

echo "== $server gone for good"
"$bin" --retry-for 2 put "$work/big" s3://faults/lost 2>"$work/lost.err" &
p=$!
sleep 0.5
server_kill
wait $p
rc=$?
check "put fails with exit 1" [ $rc = 1 ]
cmd=$(grep -o "dp-store uploads abort --upload-id [^ ]* s3://faults/lost" "$work/lost.err" | head -1)
check "the message names the upload ID and the command that removes it" [ -n "$cmd" ]
server_start
check "the upload is there once the server is back" [ "$(uploads | wc -l)" = 1 ]
read -ra args <<<"${cmd#dp-store }"
"$bin" "${args[@]}" >/dev/null
check "that command removes it" no_uploads

for sig in INT TERM; do
  echo "== dp-store put killed by SIG$sig"
  "$bin" -v put "$work/big" "s3://faults/sig$sig" 2>"$work/sig$sig.err" &
  p=$!
  upload_started "$work/sig$sig.err" || bad "the put of sig$sig started no upload"
  sleep 0.2
  kill -s $sig $p
  wait $p
  rc=$?
  want=$((128 + $(kill -l $sig)))
  check "exit $want (got $rc)" [ $rc = $want ]
  check "no object" no_object "sig$sig"
  check "no unfinished upload" no_uploads
done

echo "== dp-store put killed by SIGKILL"
"$bin" -v put "$work/big" s3://faults/sigKILL 2>"$work/sigKILL.err" &
p=$!
upload_started "$work/sigKILL.err" || bad "the put of sigKILL started no upload"
sleep 0.2
kill -9 $p
wait $p
rc=$?
check "exit 137 (got $rc)" [ $rc = 137 ]
check "the unfinished upload is listed" [ "$(uploads | grep -c s3://faults/sigKILL)" = 1 ]
check "uploads ls --older-than 3600 leaves it out" [ -z "$("$bin" uploads ls --older-than 3600 s3://faults/)" ]
"$bin" uploads abort s3://faults/sigKILL >/dev/null
check "dp-store uploads abort removes it" no_uploads

echo "== dp-store put killed by SIGKILL, then the same put again"
"$bin" -v put "$work/big" s3://faults/again 2>"$work/again1.err" &
p=$!
# killed once 3 of the 25 parts are stored (by its -v log), up to 30 s
for _ in $(seq 1 600); do
  [ "$(grep -c "PUT s3://faults/again: HTTP 200" "$work/again1.err")" -ge 3 ] && break
  sleep 0.05
done
kill -9 $p
wait $p
"$bin" -v put "$work/big" s3://faults/again 2>"$work/again2.err"
rc=$?
check "the put again completes (exit $rc)" [ $rc = 0 ]
check "the object is the file" same_object again "$work/big"
sent=$(grep -c "PUT s3://faults/again: HTTP 200" "$work/again2.err")
if [ "$server" = swift ]; then # ListParts: the upload left is continued
  check "it continues the upload left behind" grep -q "continuing upload" "$work/again2.err"
  check "and sends only the parts not stored ($sent of 25)" [ "$sent" -lt 25 ]
  check "no unfinished upload left" no_uploads
else # s3rver has no ListParts: a new upload, all parts sent
  check "a new upload sends all 25 parts ($sent)" [ "$sent" = 25 ]
  "$bin" uploads abort s3://faults/again >/dev/null
  check "the upload left is removed by uploads abort" no_uploads
fi

echo "== get killed"
"$bin" put "$work/big" s3://faults/src 2>/dev/null || bad "put of the source"
mkdir -p "$work/dl"
tmps() { find "$work/dl" -name 'out.dp-tmp-*' | wc -l; }
for how in INT TERM KILL timeout; do
  rm -f "$work/dl/out"
  if [ $how = timeout ]; then
    timeout 0.3 "$bin" get s3://faults/src "$work/dl/out" 2>/dev/null
    rc=$?
    want=124
  else
    "$bin" get s3://faults/src "$work/dl/out" 2>/dev/null &
    p=$!
    sleep 0.3
    kill -s $how $p
    wait $p
    rc=$?
    want=$((128 + $(kill -l $how)))
  fi
  check "get stopped by $how mid-way (exit $rc, want $want)" [ $rc = $want ]
  left=$(tmps)
  [ $how = KILL ] || check "get stopped by $how removed its temporary file" [ "$left" = 0 ]
  "$bin" get s3://faults/src "$work/dl/out" || bad "the next get"
  check "after $how ($left left) and the next get: no temporary file" [ "$(tmps)" = 0 ]
  check "the next get has the object" cmp -s "$work/dl/out" "$work/big"
done

echo "== $server killed during a get, back after 3 s"
rm -f "$work/dl/out"
"$bin" -v get s3://faults/src "$work/dl/out" 2>"$work/resume.err" &
p=$!
sleep 0.3
server_kill
sleep 3
server_start
wait $p
rc=$?
check "get completes (exit $rc)" [ $rc = 0 ]
check "the file is the object" cmp -s "$work/dl/out" "$work/big"
check "no temporary file" [ "$(tmps)" = 0 ]

echo "$passed passed, $failed failed"
[ $failed = 0 ]

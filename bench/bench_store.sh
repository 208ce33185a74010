#!/usr/bin/env bash
# Store throughput: upload and download of one object (SIZE_MIB, 100 MiB by
# default; run it again with SIZE_MIB=1024) with dp-store and with the curl
# command-line tool against the same server on 127.0.0.1 (fresh directory),
# in one run: SERVER=s3rver (default) or swift (Debian's Swift with s3api,
# tests/store/run-swift.sh; SWIFT_WORKERS proxy processes, default 2). Every
# round runs every variant once, in a new random order, so load from other
# processes falls on all of them alike. Prints, per variant, MiB/s as the
# median and the best of ROUNDS, the client's CPU time and the server's
# (user+sys of all its processes, medians), and the ratios dp-store / curl of
# medians and of bests, all from this run; the load average before and after;
# and the peak RSS of the streamed put - and get -.
#
# Variants: curl; dp-store as it is (above 64 MiB: multipart, 4 parts of
# 8 MiB in flight; get: above 8 MiB 4 ranges of 8 MiB in flight, size check,
# fsync, rename); dp-store one PUT (--multipart-above 5120: streamed, MD5
# checked against the ETag); put - from stdin and get - to stdout (bounded
# memory, one GET); get --no-fsync; and curl + sync FILE, curl's download made
# durable as dp-store's get is. CONTROL=1 adds a second, identical curl
# variant: its ratio to curl is the noise of the run.
# Usage: bench/bench_store.sh [DP_STORE_BINARY] (default build/cli/dp-store)
#   env: SERVER (s3rver), SIZE_MIB (100), ROUNDS (8), SEED (random order;
#        default: $RANDOM), BASE (another dp-store binary whose put and get run
#        in the same rounds), CONTROL (1: curl twice), SYNC (1, default: sync
#        before each transfer, untimed, so none pays for the previous one's
#        writeback; 0: no sync), PARALLEL and PART_MIB (dp-store's --parallel
#        and --part-size for every dp-store variant; default: its own)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/${DP_BUILD_DIR:-build}/cli/dp-store}
size_mib=${SIZE_MIB:-100}
rounds=${ROUNDS:-8}
RANDOM=${SEED:-$RANDOM}
[ -x "$bin" ] || { echo "bench_store: $bin not built" >&2; exit 1; }
tests=$root/tests/store
export DP_TEST_S3_SERVER=${SERVER:-s3rver}
export SWIFT_WORKERS=${SWIFT_WORKERS:-2}
# shellcheck source=tests/store/server.sh
. "$tests/server.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-bench-store.XXXXXX")
export DP_TEST_S3_PIDDIR=$work
cleanup() {
  for f in "$work"/*.pid; do server_stop "$f"; done
  rm -rf "$work"
}
trap cleanup EXIT
read -r port spid sdir < <(bash "$server_script" -d "$work/s3" -b bench)
[ -n "${port:-}" ] || { echo "bench_store: $server did not start" >&2; exit 1; }
hz=$(getconf CLK_TCK)
# CPU ticks of every process of the server and of the children they reaped:
# each listed PID leads a process group (a Swift proxy's workers are in its)
# (cat, not awk, opens them: a process may end between the glob and the read)
server_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk -v list="$(tr '\n' ' ' <"$sdir.pids")" 'BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) g[a[i]] = 1 }
      { sub(/^[0-9]+ \([^)]*\) /, ""); if ($3 in g) t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
ep=http://127.0.0.1:$port
export DP_STORE_ENDPOINT=$ep
dp_args=()
[ -n "${PARALLEL:-}" ] && dp_args+=(--parallel "$PARALLEL")
[ -n "${PART_MIB:-}" ] && dp_args+=(--part-size "$PART_MIB")
dp() { "$bin" "${dp_args[@]}" "$@"; }
head -c $((size_mib << 20)) /dev/urandom >"$work/obj"
sum=$(sha256sum <"$work/obj" | cut -d' ' -f1)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# s3rver and Swift (like S3) require x-amz-content-sha256, which curl 7.88 does
# not add; UNSIGNED-PAYLOAD is the cheapest value, so curl does no hashing at
# all. The credentials go through a netrc file: curl splits --user at the
# first colon, and Swift's access key is account:user.
printf 'machine 127.0.0.1 login %s password %s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" \
  >"$work/netrc"
unsigned="x-amz-content-sha256: UNSIGNED-PAYLOAD"
c_auth=(-sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --netrc-file "$work/netrc" -H "$unsigned")
v_curl_put() { curl "${c_auth[@]}" -T "$work/obj" "$ep/bench/curl" -o /dev/null; }
v_curl_get() { curl "${c_auth[@]}" -o "$work/out" "$ep/bench/curl"; }
# curl's download made as durable as dp-store's default get (fsync(2) of the
# file by coreutils' sync, after curl exits)
v_curl_get_sync() { v_curl_get && sync "$work/out"; }
v_dp_put() { dp put "$work/obj" s3://bench/dp; }
# every get reads the object curl put: one PUT. (What dp-store put above 64 MiB
# is a multipart object: Swift serves it segment by segment through its
# manifest, at about half the rate, so reading it would compare other work.)
v_dp_get() { dp get s3://bench/curl "$work/out"; }
v_dp_get_nofsync() { dp --no-fsync get s3://bench/curl "$work/out"; }
# one streamed PUT whatever the size (the multipart threshold above S3's 5 GiB)
v_single_put() { dp --multipart-above 5120 put "$work/obj" s3://bench/single; }
# stdin and stdout, with the peak RSS (GNU time, KiB) kept per run
rss() { /usr/bin/time -a -o "$work/rss.$1" -f %M "${@:2}"; }
v_pipe_put() { rss pipe_put "$bin" "${dp_args[@]}" put - s3://bench/pipe <"$work/obj"; }
v_pipe_get() { rss pipe_get "$bin" "${dp_args[@]}" get s3://bench/curl - >"$work/out"; }
variants=(curl_put dp_put single_put pipe_put curl_get curl_get_sync dp_get dp_get_nofsync
  pipe_get)
if ! "$bin" --help | grep -q -- --parallel; then
  echo "bench_store: $bin predates --parallel and streamed put -/get -" >&2
  exit 1
fi
# CONTROL=1: curl again, to show how far two identical commands differ in this run
if [ "${CONTROL:-0}" = 1 ]; then
  v_curlb_put() { curl "${c_auth[@]}" -T "$work/obj" "$ep/bench/curlb" -o /dev/null; }
  v_curlb_get() { curl "${c_auth[@]}" -o "$work/out" "$ep/bench/curlb"; }
  variants+=(curlb_put curlb_get)
fi
# BASE=path/to/older/dp-store: its put and get too, to compare two builds in one run
if [ -n "${BASE:-}" ]; then
  v_base_put() { "$BASE" put "$work/obj" s3://bench/base; }
  v_base_get() { "$BASE" get s3://bench/curl "$work/out"; }
  variants+=(base_put base_get)
fi

TIMEFORMAT='%R %U %S'
run() { # variant: appends "wall user sys server_ticks" to t.VARIANT
  rm -f "$work/out"
  # no transfer pays for the one before: the last put's 64 MiB are still being
  # written back by the kernel (the server's copy, and the download's), which
  # otherwise lands on whichever variant runs next (SYNC=0: no sync)
  [ "${SYNC:-1}" = 1 ] && sync
  local s0 t
  s0=$(server_ticks)
  t=$({ time "v_$1" >/dev/null 2>"$work/err"; } 2>&1) ||
    { cat "$work/err" >&2; echo "bench_store: $1 failed" >&2; exit 1; }
  echo "$t $(($(server_ticks) - s0))" >>"$work/t.$1"
  if [[ $1 == *_get* ]]; then
    [ "$(sha256sum <"$work/out" | cut -d' ' -f1)" = "$sum" ] ||
      { echo "bench_store: $1: download differs" >&2; exit 1; }
  fi
}
# the objects the gets read, then ROUNDS rounds in a random order each
for v in "${variants[@]}"; do [[ $v == *_put* ]] && "v_$v"; done
for _ in $(seq 1 "$rounds"); do
  order=("${variants[@]}")
  for ((i = ${#order[@]} - 1; i > 0; i--)); do
    j=$((RANDOM % (i + 1)))
    t=${order[i]} order[i]=${order[j]} order[j]=$t
  done
  for v in "${order[@]}"; do run "$v"; done
done

# median and best wall time, median client and server CPU, of a variant:
# "MED BEST CPU SERVER_CPU" in seconds
stats() {
  awk -v hz="$hz" '{w[NR] = $1; c[NR] = $2 + $3; s[NR] = $4 / hz}
    function med(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { m = med(w, NR); printf "%s %s %s %s\n", m, w[1], med(c, NR), med(s, NR) }' "$work/t.$1"
}
printf 'object %d MiB, %d rounds (random order within each), %s on 127.0.0.1:%s\n' \
  "$size_mib" "$rounds" "$server" "$port"
[ ${#dp_args[@]} -gt 0 ] && echo "dp-store ${dp_args[*]}"
printf 'load average before: %s   after: %s   (%s CPUs)\n' "$load_before" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)"
printf '%-30s %12s %12s %10s %10s %14s %12s\n' variant 'median MiB/s' 'best MiB/s' 'cpu s' \
  'server s' 'median/curl' 'best/curl'
for op in put get; do
  read -r cm cb _ < <(stats "curl_$op")
  for v in "${variants[@]}"; do
    [[ $v == *_$op* ]] || continue
    read -r m b c sc < <(stats "$v")
    case $v in
      curl_get_sync) label="curl + sync FILE" ;;
      curl_*) label="curl" ;;
      curlb_*) label="curl again (noise)" ;;
      dp_put) label="dp-store (default)" ;;
      dp_get) label="dp-store (fsync)" ;;
      single_put) label="dp-store one PUT" ;;
      pipe_put) label="dp-store put - (stdin)" ;;
      pipe_get) label="dp-store get - (stdout)" ;;
      dp_get_nofsync) label="dp-store --no-fsync" ;;
      base_*) label="BASE (older build)" ;;
    esac
    awk -v op="$op" -v l="$label" -v s="$size_mib" -v m="$m" -v b="$b" -v c="$c" -v sc="$sc" \
      -v cm="$cm" -v cb="$cb" 'BEGIN { printf "%-4s%-26s %12.1f %12.1f %10.3f %10.2f %13.2fx %11.2fx\n",
        op, l, s / m, s / b, c, sc, cm / m, cb / b }'
  done
done
# the acceptance pairs: dp-store against curl doing the same work
ratio() { # VARIANT REFERENCE: median throughput of VARIANT / that of REFERENCE
  [ -e "$work/t.$1" ] && [ -e "$work/t.$2" ] || { echo "n/a"; return; }
  read -r m _ < <(stats "$1")
  read -r r _ < <(stats "$2")
  awk -v m="$m" -v r="$r" 'BEGIN { printf "%.2fx", r / m }'
}
echo "same work, median throughput against curl's:"
echo "  put  dp-store (default)      / curl                : $(ratio dp_put curl_put)"
echo "  put  dp-store one PUT        / curl                : $(ratio single_put curl_put)"
echo "  get  dp-store (fsync)        / curl                : $(ratio dp_get curl_get)"
echo "  get  dp-store --no-fsync     / curl                : $(ratio dp_get_nofsync curl_get)"
echo "  get  dp-store (fsync)        / curl + sync FILE    : $(ratio dp_get curl_get_sync)"
for v in pipe_put pipe_get; do
  [ -e "$work/rss.$v" ] &&
    echo "peak RSS of $v over $(wc -l <"$work/rss.$v") runs: $(sort -n "$work/rss.$v" | tail -1) KiB"
done

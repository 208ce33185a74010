#!/usr/bin/env bash
# Store throughput: upload and download of one 64 MiB object with dp-store and
# with the curl command-line tool against the same s3rver (127.0.0.1, fresh
# directory), interleaved, in one run. Prints MiB/s (best of ROUNDS) and the
# ratios dp-store / curl. s3rver (Node) may well be the bottleneck.
# Usage: bench/bench_store.sh [DP_STORE_BINARY] (default build/cli/dp-store)
#   env: SIZE_MIB (64), ROUNDS (5)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/${DP_BUILD_DIR:-build}/cli/dp-store}
size_mib=${SIZE_MIB:-64}
rounds=${ROUNDS:-5}
[ -x "$bin" ] || { echo "bench_store: $bin not built" >&2; exit 1; }
tests=$root/tests/store
[ -x "$tests/node_modules/.bin/s3rver" ] ||
  npm ci --prefix "$tests" --no-audit --no-fund --loglevel=error >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-bench-store.XXXXXX")
export DP_TEST_S3_PIDDIR=$work
cleanup() {
  for f in "$work"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
read -r port _ _ < <(bash "$tests/run-s3rver.sh" -d "$work/s3" -b bench)
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER DP_STORE_ENDPOINT=$ep
head -c $((size_mib << 20)) /dev/urandom >"$work/obj"
sum=$(sha256sum <"$work/obj" | cut -d' ' -f1)

now() { date +%s.%N; }
best() { sort -g | head -1; }
run() { # name command...
  local a b
  a=$(now)
  "${@:2}"
  b=$(now)
  awk "BEGIN{print $b - $a}" >>"$work/t.$1"
}
check() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$sum" ] || { echo "bench_store: $1 differs" >&2; exit 1; }; }
# s3rver (like S3) requires x-amz-content-sha256, which curl 7.88 does not add;
# UNSIGNED-PAYLOAD is the cheapest value, so curl does no hashing at all.
unsigned="x-amz-content-sha256: UNSIGNED-PAYLOAD"
curl_put() { curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "$unsigned" -T "$work/obj" "$ep/bench/$1" -o /dev/null; }
curl_get() { curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user S3RVER:S3RVER -H "$unsigned" -o "$work/out" "$ep/bench/$1"; }

for r in $(seq 1 "$rounds"); do
  run curl_put curl_put curl-$r
  run dp_put "$bin" put "$work/obj" "s3://bench/dp-$r"
  run dp_mp_put "$bin" --multipart-above 8 --part-size 16 put "$work/obj" "s3://bench/mp-$r"
  run curl_get curl_get curl-$r; check "$work/out"; rm -f "$work/out"
  run dp_get "$bin" get "s3://bench/dp-$r" "$work/out"; check "$work/out"; rm -f "$work/out"
  run dp_mp_get "$bin" get "s3://bench/mp-$r" "$work/out"; check "$work/out"; rm -f "$work/out"
done
rate() { awk "BEGIN{print $size_mib / $(best <"$work/t.$1")}"; }
printf 'object %d MiB, %d rounds, best of each, s3rver on 127.0.0.1:%s\n' "$size_mib" "$rounds" "$port"
for op in put get; do
  c=$(rate "curl_$op") d=$(rate "dp_$op") m=$(rate "dp_mp_$op")
  printf '%s: curl %7.1f MiB/s   dp-store %7.1f MiB/s (%.2fx)   dp-store multipart 16 MiB parts %7.1f MiB/s (%.2fx)\n' \
    "$op" "$c" "$d" "$(awk "BEGIN{print $d / $c}")" "$m" "$(awk "BEGIN{print $m / $c}")"
done

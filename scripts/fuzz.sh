#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for N seconds (default 30)
# on its seed corpus (a scratch copy, so the tree is not modified). Seeds too big
# to commit are written into the scratch copy by the fuzzer itself (fuzz_perform:
# a generator file, through DP_FUZZ_PERFORM_SEEDS). DP_FUZZ_BUILD_DIR: the build
# directory (default build-fuzz). DP_FUZZ_SEED: libFuzzer's -seed (default: a
# random seed each run); CI sets one so that a run it fails is the run a
# developer repeats.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
build=${DP_FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$build" -DDP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzzers >/dev/null
shopt -s nullglob
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); corpus=fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d); [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
  [ "$name" = fuzz_perform ] && DP_FUZZ_PERFORM_SEEDS="$work" "$bin" >/dev/null
  echo "fuzz: $name for ${secs}s"
  log=$(mktemp); rc=0; rm -f "$build/$name"-*
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
    ${DP_FUZZ_SEED:+-seed="$DP_FUZZ_SEED"} \
    -artifact_prefix="$build/$name-" "$work" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    # A finding: the report, then each input it wrote, in base64 so the
    # input can be recovered from the CI log alone.
    echo "fuzz: $name FAILED (exit $rc)"
    grep -v '^#[0-9]' "$log" | tail -60
    for a in "$build/$name"-*; do
      [ -f "$a" ] || continue
      echo "fuzz: $a (base64):"; base64 -w0 "$a"; echo
    done
    rm -rf "$work" "$log"; exit "$rc"
  fi
  grep '^stat::' "$log" | grep -E 'number_of_executed_units|new_units_added|peak_rss_mb'
  rm -rf "$work" "$log"
done

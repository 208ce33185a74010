#!/usr/bin/env bash
# fuzz_perform's scratch directory ($TMPDIR/dp-fuzz-XXXXXX) must not outlive
# the fuzzer, however it ends: a normal end, a crash or an interrupt
# (libFuzzer's _Exit: no atexit handlers run) or SIGKILL.
# Usage: perform_scratch_test.sh FUZZ_PERFORM CORPUS_DIR
set -euo pipefail
bin=$1 corpus=$2
scratch=$(mktemp -d) work=$(mktemp -d)
trap 'rm -rf "$scratch" "$work"' EXIT
export TMPDIR=$scratch

# empty within 5 s, else fail naming the case
expect_clean() {
  for _ in $(seq 50); do
    [ -z "$(ls -A "$scratch")" ] && return 0
    sleep 0.1
  done
  echo "FAIL: after $1, left behind: $(ls -A "$scratch")"
  exit 1
}

"$bin" -runs=0 "$corpus"/* >/dev/null 2>&1
expect_clean "a normal end"

for sig in SEGV TERM INT KILL; do
  "$bin" -max_total_time=60 -artifact_prefix="$work/" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do # the fuzzer is running once its scratch exists
    compgen -G "$scratch/dp-fuzz-*" >/dev/null && break
    sleep 0.1
  done
  compgen -G "$scratch/dp-fuzz-*" >/dev/null || { echo "FAIL: no scratch directory"; exit 1; }
  sleep 0.5
  kill -s "$sig" "$pid"
  wait "$pid" || true
  expect_clean "SIG$sig"
done
echo "fuzz_perform scratch: clean after a normal end, SIGSEGV, SIGTERM, SIGINT and SIGKILL"

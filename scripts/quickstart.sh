#!/usr/bin/env bash
# README command (a): install what is needed, build, and run the quickstart
# campaign (examples/quickstart.txtpb: two shipped models on Fashion-MNIST,
# Linf 0.03 and 0.09, DeepPerform against random noise and ILFO on the first
# 64 test images, latency on this machine) end to end on this machine with
# `dp-submit --local`: the coordinator, a trainer and a measurer as threads
# of one process, the results in a file:// store under the run directory.
# dp-submit prints where the results, summary.json and the report are.
#
# Environment: DP_BUILD_DIR (build), DP_BUILD_TYPE (RelWithDebInfo, as
# scripts/build.sh, so command (b) reuses the build), DP_QUICKSTART_DIR
# (dp-runs/quickstart: journal, store, scratch).
# Arguments go to dp-submit (e.g. --threads 2, -v).
#
# Running it again on the same directory resumes an interrupted run, or
# prints the finished run's summary again (the campaign is not submitted
# twice); remove the directory for a fresh run.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/install-deps.sh
dir=${DP_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${DP_BUILD_TYPE:-RelWithDebInfo}" ${DP_CMAKE_ARGS:-} >/dev/null
# only what the campaign needs (scripts/build.sh builds everything)
cmake --build "$dir" -j"$(nproc)" --target dp-submit examples
t1=$(date +%s)
run=${DP_QUICKSTART_DIR:-dp-runs/quickstart}
echo "quickstart: built in $((t1 - t0)) s; running examples/quickstart.txtpb in $run"
rc=0
"$dir/cli/dp-submit" --local examples/quickstart.txtpb --dir "$run" "$@" || rc=$?
t2=$(date +%s)
echo "quickstart: campaign $((t2 - t1)) s, all $((t2 - t0)) s (exit $rc)"
exit $rc

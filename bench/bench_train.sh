#!/usr/bin/env bash
# Wall time of one whole generator training at dp-perform's default settings
# (no width, epoch, image or schedule flag: what a user gets), from a fresh
# start to the written generator (kill-and-resume is tested in tests/perform).
# Prints the settings line dp-perform prints, every epoch line, the total wall
# time and the load average before and after.
#
# usage: bench/bench_train.sh [MODEL] [NORM] [EPS]
#   (default models/sdn_resnet linf 0.09)
#   env: BUILD (build), THREADS (dp-perform's default: all cores),
#        DATA_DIR (/usr/share/datasets/fashion-mnist), KEEP=1 keeps the output
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
dp=$build/cli/dp-perform
model=${1:-$root/models/sdn_resnet}
norm=${2:-linf}
eps=${3:-0.09}
[ -x "$dp" ] || { echo "bench_train: build $dp first (bash scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-bench-train.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
args=(train --model "$model" --norm "$norm" --eps "$eps" --out "$work/gen.safetensors")
[ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
[ -n "${DATA_DIR:-}" ] && args+=(--data-dir "$DATA_DIR")
echo "bench_train: load before $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
t0=$(date +%s.%N)
"$dp" "${args[@]}"
t1=$(date +%s.%N)
echo "bench_train: load after $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "bench_train: whole training at the defaults: %.0f s (%.1f min)\n", b - a, (b - a) / 60 }'
[ "${KEEP:-0}" = 1 ] && echo "bench_train: kept $work"
exit 0

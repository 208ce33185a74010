#!/usr/bin/env bash
# Runs the numeric suites (ctest label `numeric`) again under forced OpenBLAS
# core types, so thread-count independence and the tolerances hold on every
# kernel family whatever CPU runs CI. By default one core type per x86-64
# kernel family this CPU can execute: Haswell (AVX2+FMA) always, SkylakeX
# (AVX-512) where the CPU has avx512f, else Sandybridge (AVX), since an
# AVX-512 kernel stops with SIGILL on a CPU without it.
# OPENBLAS_L2_SIZE=512 is set as on the machines that force a core type.
# Usage: scripts/test-kernels.sh [ctest args...]   (DP_KERNELS="Haswell Zen" to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DP_BUILD_DIR:-build}
if [ -z "${DP_KERNELS:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo; then DP_KERNELS="Haswell SkylakeX"; else DP_KERNELS="Haswell Sandybridge"; fi
fi
[ -d "$dir" ] || bash scripts/build.sh
for core in $DP_KERNELS; do
  echo "== numeric suites with OPENBLAS_CORETYPE=$core"
  (cd "$dir" && OPENBLAS_CORETYPE=$core OPENBLAS_L2_SIZE=512 DP_EXPECT_BLAS_CORE=$core ctest --output-on-failure -j1 -L numeric "$@")
done

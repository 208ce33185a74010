#!/usr/bin/env bash
# Configures and builds into build/ (or $DP_BUILD_DIR); cmake options from
# $DP_CMAKE_ARGS and the arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DP_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=${DP_BUILD_TYPE:-RelWithDebInfo} ${DP_CMAKE_ARGS:-} "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"

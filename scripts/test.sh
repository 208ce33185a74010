#!/usr/bin/env bash
# The test command of README.md: builds, then runs every Criterion suite
# through ctest (integration suites start their own servers on 127.0.0.1).
# The docker-labelled test (the container image built and run for real, 7 to
# 14 minutes on 2 cores) runs only with DP_TEST_DOCKER=1:
#   DP_TEST_DOCKER=1 bash scripts/test.sh -L docker
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
dir=${DP_BUILD_DIR:-build}
cd "$dir"
skip=(-LE docker)
[ "${DP_TEST_DOCKER:-0}" = 1 ] && skip=()
ctest --output-on-failure -j1 "${skip[@]}" "$@"

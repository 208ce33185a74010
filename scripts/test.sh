#!/usr/bin/env bash
# The test command of README.md: builds, then runs every Criterion suite
# through ctest (integration suites start their own servers on 127.0.0.1).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
dir=${DP_BUILD_DIR:-build}
cd "$dir"
ctest --output-on-failure -j1 "$@"

#!/usr/bin/env bash
# README command (a): install what is needed, build, run the main job on the
# embedded default (Fashion-MNIST from Debian's dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec ./build/cli/dp-cnn "$@"

#!/usr/bin/env bash
# The test command (README, CI): install packages, build, run the whole CTest suite.
# Without a GPU the tests labelled "cuda" report themselves as skipped (never as passed).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)"

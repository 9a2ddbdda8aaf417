#!/usr/bin/env bash
# The test command (README, CI): install packages, build, run the whole CTest suite; then build the CPU code
# again with clang, AddressSanitizer and UndefinedBehaviorSanitizer into build-sanitize and run its CPU tests
# there, and each fuzzer for a minute (docs/reliability.md, "Sanitizers" and "Fuzzing").
# Without a GPU the tests labelled "cuda" report themselves as skipped (never as passed). Extra arguments go
# to the first build's CMake configure step (tools/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh "$@"
ctest --test-dir build --output-on-failure -j "$(nproc)"
MGL_BUILD_DIR=build-sanitize tools/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DMGL_WITH_CUDA=OFF \
  -DMGL_SANITIZE=ON -DMGL_BUILD_FUZZERS=ON
ctest --test-dir build-sanitize --output-on-failure -j "$(nproc)"

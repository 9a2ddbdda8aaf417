#!/usr/bin/env bash
# Configures and builds megalodon.cpp into build/ (Release; MGL_BUILD_DIR=dir builds into dir instead). Extra
# arguments go to CMake's configure step, e.g. tools/build.sh -DMGL_WITH_CUDA=OFF or -DCMAKE_CUDA_ARCHITECTURES=90.
# MGL_BUILD_TARGETS="train generate" builds only those targets (the main job does not need the test executables).
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
build="${MGL_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@"
cmake --build "$build" -j "$(nproc)" ${MGL_BUILD_TARGETS:+--target $MGL_BUILD_TARGETS}

#!/usr/bin/env bash
# The main job (README): install packages, build, and run the demo — an MLP trained on a synthetic
# task on the CPU (and on the GPU when one is present), printing a falling loss.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
build/bin/mlp_demo --device cpu
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  build/bin/mlp_demo --device cuda
else
  echo "(no GPU here: the CUDA run is skipped)"
fi

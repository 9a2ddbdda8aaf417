#!/usr/bin/env bash
# The main job (README): install packages, build, train the `tiny` MEGALODON config on the default corpus
# (the GCIDE dictionary, prepared on first use) and print a sample from the trained checkpoint.
# On two CPU cores the training takes a few minutes; with a GPU it runs there (bf16).
# Arguments go to train (e.g. --steps 100, --device cpu, --set optimizer.lr=1e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
MGL_BUILD_TARGETS="train generate prepare" tools/build.sh
run=runs/demo-tiny
rm -rf "$run"
build/bin/train --config tiny --out "$run" "$@"
tools/plot_metrics.sh "$run" "$run/metrics.png" "tiny on GCIDE" || true
echo
echo "== a sample from $run (temperature 0.8, top-k 40):"
build/bin/generate --checkpoint "$run" --prompt 'Ocean \O"cean\, n. ' --max-new-tokens 300 \
  --temperature 0.8 --top-k 40 --seed 7

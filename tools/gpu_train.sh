#!/usr/bin/env bash
# On the GPU machine: build (if needed) and train a config there, keeping the run's record under $OUT.
#   tools/gpu_train.sh CONFIG STEPS [more train arguments...]
# e.g. tools/gpu_train.sh mega200M 600 --data data/gcide-sentencepiece32000
# Writes $OUT/<config>/{train.log,metrics.jsonl,config.json,long_context.tsv,nvidia-smi.txt}; the
# checkpoints stay on the machine (gigabytes). Plot afterwards with tools/plot_metrics.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
config="${1:?usage: tools/gpu_train.sh CONFIG STEPS [train arguments]}"
steps="${2:?usage: tools/gpu_train.sh CONFIG STEPS [train arguments]}"
shift 2
out="${OUT:-$PWD/gpu_train_out}/$config"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ ! -x build-gpu/bin/train ]; then
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target train generate > "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/nvidia-smi.txt"
run="runs/gpu-$config"
rm -rf "$run"
echo "command: build-gpu/bin/train --config $config --steps $steps --device cuda --out $run $*" | tee "$out/train.log"
build-gpu/bin/train --config "$config" --steps "$steps" --device cuda --out "$run" "$@" 2>&1 | tee -a "$out/train.log" |
  grep -vE '^ |^\{|^\}' | awk 'NR % 5 == 1 || /val|error|train:/'
status=${PIPESTATUS[0]}
cp "$run"/metrics.jsonl "$run"/config.json "$out"/ 2>/dev/null
cp "$run"/long_context.tsv "$out"/ 2>/dev/null
exit "$status"

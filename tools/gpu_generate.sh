#!/usr/bin/env bash
# On the GPU machine: generate's decode speed and memory against the context length for a config
# (default mega200M): a checkpoint after one training step (the weights' values do not change the
# speed), prompts of about 4K, 64K and 1M tokens cut from the default corpus and prefilled as generate
# does, then 512 greedy tokens decoded; plus bench_decode. Records under $OUT/generate.
#   tools/gpu_generate.sh [CONFIG] [--data DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
config="${1:-mega200M}"
shift || true
out="${OUT:-$PWD/gpu_generate_out}/generate"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
[ -x build-gpu/bin/generate ] || { echo "build first (tools/gpu_check.sh)"; exit 1; }
corpus="${MGL_DEFAULT_CORPUS:-/usr/share/dictd/gcide.dict.dz}"

run="runs/gpu-generate-$config"
rm -rf "$run"
build-gpu/bin/train --config "$config" --steps 1 --device cuda --out "$run" --set schedule.warmup_steps=0 \
  --set eval.long_context_tokens=0 --set eval.batches=1 "$@" > "$out/train.log" 2>&1 ||
  { tail -5 "$out/train.log"; exit 1; }

# About 4 bytes of GCIDE per SentencePiece token: 16 KB, 256 KB and 4.2 MB of text.
for bytes in 16000 256000 4200000; do
  head -c "$bytes" < <(zcat "$corpus") > "$out/prompt_$bytes.txt"
  echo "== prompt of $bytes bytes" | tee -a "$out/generate.log"
  build-gpu/bin/generate --checkpoint "$run" --prompt-file "$out/prompt_$bytes.txt" --greedy \
    --max-new-tokens 512 --device cuda --dtype bf16 > "$out/completion_$bytes.txt" 2> "$out/report_$bytes.txt"
  status=$?
  cat "$out/report_$bytes.txt" | tee -a "$out/generate.log"
  [ $status -eq 0 ] || echo "generate failed with status $status" | tee -a "$out/generate.log"
done
echo "== bench_decode" | tee -a "$out/generate.log"
timeout 300 build-gpu/bin/bench_decode --breakdown 2>&1 | tee -a "$out/generate.log" | tail -20

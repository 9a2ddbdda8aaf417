#!/usr/bin/env bash
# The fuzzers' seed corpora (CTest fixture fuzz_seeds): real files, made by the apps as a user makes them, in
# FUZZ_DIR/seeds/<target>; also makes the folders libFuzzer writes into (corpus/<target>, artifacts).
#   tests/fuzz/make_seeds.sh BIN_DIR FUZZ_DIR SOURCE_DIR
set -euo pipefail
bin="$(realpath "$1")"
fuzz="$(realpath -m "$2")"
source="$(realpath "$3")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
seeds="$fuzz/seeds"
rm -rf "$seeds"
for target in checkpoint config data_folder tokenizer; do mkdir -p "$seeds/$target" "$fuzz/corpus/$target"; done
mkdir -p "$fuzz/artifacts"

# quietly COMMAND...: runs it, showing its output only when it fails.
quietly() {
  "$@" >"$work/log.txt" 2>&1 || { cat "$work/log.txt"; echo "FAIL: $*"; exit 1; }
}

# join_parts OUT FILE...: the files as one input of the data folder fuzzer (kPartSeparator of harness.h).
join_parts() {
  local out="$1" first=1
  shift
  : >"$out"
  for file in "$@"; do
    if [ "$first" -eq 0 ]; then printf '\n--mgl-fuzz-part--\n' >>"$out"; fi
    cat "$file" >>"$out"
    first=0
  done
}

# Data folders of both tokenizers, from a page of the docs (any text does).
head -c 4000 "$source/docs/megalodon.md" >text.txt
quietly "$bin/prepare" --input text.txt --out bytes --seq-len 16 --val-fraction 0.1
quietly "$bin/prepare" --input text.txt --out pieces --tokenizer sentencepiece --vocab-size 400 --seq-len 16 \
  --val-fraction 0.1
join_parts "$seeds/data_folder/bytes" bytes/{meta.json,train.bin,val.bin}
join_parts "$seeds/data_folder/sentencepiece" pieces/{meta.json,train.bin,val.bin,tokenizer.model}
cp pieces/tokenizer.model "$seeds/tokenizer/"

# A checkpoint of the smallest model after one step, and the same weights as an HDF5 weights file and a
# safetensors export (whose config.json is an official ModelConf).
model=(--set model.preset=test --set model.vocab_size=256 --set model.num_layers=1 --set model.share_embedding=true)
quietly "$bin/train" --config tiny "${model[@]}" --steps 1 --set schedule.warmup_steps=0 --set train.batch_size=1 \
  --set train.seq_len=16 --set eval.batches=1 --set eval.long_context_tokens=0 --data bytes --out run --device cpu
cp run/checkpoints/step_00000001.h5 "$seeds/checkpoint/checkpoint.h5"
quietly "$bin/convert" run weights.h5
quietly "$bin/convert" run export
cp weights.h5 "$seeds/checkpoint/weights.h5"
cp export/model.safetensors "$seeds/checkpoint/"

# Configs: ours, the resolved one a run stores, an official ModelConf, and one with --set overrides.
cp "$source"/configs/*.json "$seeds/config/"
"$bin/train" --config tiny "${model[@]}" --print-config >"$seeds/config/resolved.json"
cp export/config.json "$seeds/config/official.json"
{
  cat "$source/configs/tiny.json"
  printf '\0model.num_layers=3\ntrain.steps=5\nmodel.efficient_attn=fused\nparallel.data=2'
} >"$seeds/config/overrides"
echo "fuzz seeds: $(find "$seeds" -type f | wc -l) files in $seeds"

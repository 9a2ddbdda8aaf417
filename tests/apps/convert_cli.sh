#!/usr/bin/env bash
# The convert, debug_state and train binaries on each other's files (CTest: apps_convert_cli): a run's
# checkpoint -> export directory (safetensors + official config.json) -> HDF5 weights -> export again gives
# the same safetensors bytes and the same HDF5 datasets; debug_state gives one loss from the checkpoint, the
# export and the weights file; train --init-from an export starts at step 0 from its weights; foreign files
# and missing configs are one clear error; outputs are atomic (a full disk publishes nothing) and an export
# directory is locked while written.
#   tests/apps/convert_cli.sh path/to/bin   (holding convert, debug_state, train)
set -uo pipefail
bin="$(realpath "${1:?usage: convert_cli.sh path/to/bin}")"
# shellcheck source=tests/apps/cli_setup.sh
source "$(dirname "$(realpath "$0")")/cli_setup.sh"
corpus_sample 100000
small=(--data corpus.txt --set train.batch_size=2 --set train.seq_len=64 --set schedule.warmup_steps=1
       --set eval.every=0 --set eval.batches=1 --set eval.long_context_tokens=0)
"$bin/train" "${small[@]}" --steps 2 --out run >run.log 2>&1 || fail "training the checkpoint failed: $(tail -2 run.log)"

"$bin/convert" run export >/dev/null || fail "convert run -> export"
[ -f export/model.safetensors ] && grep -q '"efficient_attn": null' export/config.json || fail "export directory incomplete"
"$bin/convert" export weights.h5 >/dev/null || fail "convert export -> weights.h5"
"$bin/convert" weights.h5 export2 >/dev/null || fail "convert weights.h5 -> export2"
cmp -s export/model.safetensors export2/model.safetensors || fail "safetensors bytes differ after a round trip"
"$bin/convert" export2/model.safetensors weights2.h5 >/dev/null || fail "convert .safetensors -> weights2.h5"
h5diff weights.h5 weights2.h5 || fail "HDF5 weights differ after a round trip"

# One batch (h5import: int64 input_ids and targets, 1 x 16), the same loss from every form of the weights.
seq 0 15 >ids.txt
seq 1 16 >targets.txt
for name in input_ids targets; do
  printf 'PATH %s\nINPUT-CLASS TEXTIN\nRANK 2\nDIMENSION-SIZES 1 16\nOUTPUT-CLASS IN\nOUTPUT-SIZE 64\n' "$name" >"$name.conf"
done
h5import ids.txt -c input_ids.conf targets.txt -c targets.conf -o batch.h5 || fail "h5import"
for weights in run export weights.h5; do
  "$bin/debug_state" --weights "$weights" --batch batch.h5 --out "state_$weights.h5" >/dev/null ||
    fail "debug_state --weights $weights"
done
h5diff state_run.h5 state_export.h5 && h5diff state_run.h5 state_weights.h5.h5 || fail "debug_state differs between forms"
expect_error "no batch" "pass --batch" "$bin/debug_state" --weights run --out s.h5

# Fine-tuning from the export, with its official config.json: step 1 starts from the trained weights.
"$bin/train" --config export/config.json --init-from export "${small[@]}" --steps 1 --out tuned >tuned.log 2>&1 ||
  fail "train --init-from failed: $(tail -2 tuned.log)"
grep -q "initialized the parameters from export" tuned.log || fail "train --init-from did not say so"
grep -q '"step":1,' tuned/metrics.jsonl || fail "the fine-tuning run does not start at step 1"

printf 'PK\003\004not really a zip' >consolidated.pth
expect_error "a PyTorch file" "tools/convert_pth.py" "$bin/convert" consolidated.pth out
printf 'hello' >notes.txt
expect_error "a text file" "is not a training checkpoint" "$bin/convert" notes.txt out
header='{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'  # a safetensors file with no metadata
{ printf "\\$(printf %03o ${#header})\0\0\0\0\0\0\0"; printf '%s' "$header"; printf '\0\0\0\0'; } >bare.safetensors
expect_error "no config" "pass --config" "$bin/convert" bare.safetensors out
"$bin/convert" bare.safetensors bare_export --config export/config.json >/dev/null || fail "convert --config"
grep -q '"model_dim": 128' bare_export/config.json || fail "convert --config did not write the given config"

# Outputs are written atomically, and an export directory is locked while it is written (docs/reliability.md).
# A folder another process holds (this shell, through fd 9, as a second convert or a trainer would) is refused
# naming the holder; a run folder is no place for an export (its config.json would be replaced).
mkdir busy
exec 9>busy/.lock
flock -n 9 || fail "could not lock busy/.lock"
echo $$ >&9
expect_error "a locked export folder" "convert: export folder 'busy' is in use by process $$" "$bin/convert" run busy
exec 9>&-
"$bin/convert" run busy >/dev/null || fail "convert into the folder once its lock was released"
expect_error "an export into a run folder" "'run' is a run folder (it holds checkpoints/)" "$bin/convert" export run
# A full disk (the temporary file is /dev/full): the OS reason, nothing published under the final name, the
# temporary file gone; an export cut short before model.safetensors is refused by every reader.
mkdir full_export && ln -s /dev/full full_export/model.safetensors.tmp
expect_error "a full disk while exporting" "model.safetensors.tmp': No space left on device" "$bin/convert" run full_export
[ -e full_export/model.safetensors ] && fail "a safetensors file that could not be written was published"
[ -e full_export/model.safetensors.tmp ] && fail "the temporary safetensors file was left behind"
expect_error "a half-written export" "holds neither model.safetensors" "$bin/convert" full_export again.h5
ln -s /dev/full full.h5.tmp
expect_error "a full disk while writing weights" "full.h5.tmp.*No space left on device" "$bin/convert" run full.h5
[ -e full.h5 ] && fail "a weights file that could not be written was published"
ln -s /dev/full state_full.h5.tmp
expect_error "a full disk while writing the state" "state_full.h5.tmp.*No space left on device" \
  "$bin/debug_state" --weights run --batch batch.h5 --out state_full.h5
[ -e state_full.h5 ] && fail "a state file that could not be written was published"

finish convert_cli

#!/usr/bin/env bash
# The train binary end to end (CTest: apps_train_cli): --help, bad input (one clear line, exit 1), one run
# per folder, and a run killed by SIGKILL after a checkpoint that, resumed, logs exactly the uninterrupted run's metrics.
#   tests/apps/train_cli.sh path/to/train
set -uo pipefail
train="$(realpath "${1:?usage: train_cli.sh path/to/train}")"
# shellcheck source=tests/apps/cli_setup.sh
source "$(dirname "$(realpath "$0")")/cli_setup.sh"
corpus_sample 300000
small=(--data corpus.txt --set train.batch_size=2 --set train.seq_len=64 --set schedule.warmup_steps=2
       --set eval.every=0 --set eval.batches=1 --set eval.long_context_tokens=0 --set train.checkpoint_every=4
       --set train.keep_checkpoints=10)

"$train" --help >help.txt || fail "--help exits non-zero"
for key in model.num_layers train.steps optimizer.lr schedule.decay eval.every data.tokenizer tiny mega200M paper7b; do
  grep -q "$key" help.txt || fail "--help does not list $key"
done
# --help shows the values of the chosen config, --set applied.
"$train" --config mega200M --set train.steps=77 --help >help_m200.txt || fail "--config mega200M --help exits non-zero"
grep -q 'model.model_dim  \[1024\]' help_m200.txt || fail "--config mega200M --help does not show model_dim 1024"
grep -q 'train.steps  \[77\]' help_m200.txt || fail "--help does not show the --set value"
grep -q 'model.model_dim  \[128\]' help.txt || fail "--help does not show tiny's model_dim 128"
grep -q -- '--device TEXT=auto' help.txt || fail "--help does not show the flags' defaults"

# A schedule that does not fit the steps names the keys to change.
expect_error "warmup past the steps" "lower it (--set schedule.warmup_steps=N, N <= 2)" "$train" --steps 2 --data corpus.txt
# A folder of another trainer's token ids (nanoGPT's uint16 train.bin / val.bin) is refused, not read as text.
# (Two fixed bytes first: random ones would start like a pickle, 0x80, in one run of 256.)
mkdir nanogpt && printf '\x01\x02' >nanogpt/train.bin && head -c 4000 /dev/urandom >>nanogpt/train.bin
head -c 400 /dev/urandom >nanogpt/val.bin
printf '\x00\x01' >>nanogpt/train.bin
expect_error "a nanoGPT folder" "nanoGPT's prepare.py" "$train" --data nanogpt --out run_nanogpt

expect_error "unknown key" "unknown key 'train.stepz'" "$train" --set train.stepz=3 --data corpus.txt
expect_error "wrong type" "model.num_layers" "$train" --set model.num_layers=two --data corpus.txt
expect_error "unknown config" "known:" "$train" --config nonesuch
expect_error "missing data" "does not exist" "$train" --data nowhere.txt --out run0
expect_error "bad device" "device" "$train" "${small[@]}" --device tpu --out run0
printf 'garbage' > notjson.json
expect_error "malformed config" "not valid JSON" "$train" --config notjson.json

# An official ModelConf JSON as megalodon/config.py writes it: accepted, its keys without effect reported once;
# every unknown key of a file named in one error.
cat > official.json <<'JSON'
{"num_layers": 2, "model_dim": 64, "z_dim": 32, "value_dim": 64, "num_heads": 1, "ffn_hidden_dim": 128,
 "cema_ndim": 4, "chunk_size": 32, "efficient_attn": null, "init_mode": "he", "vocab_size": 256, "output_size": -1,
 "norm_num_groups": 8, "norm_affine": true, "norm_eps": 1e-05, "rope_base": null, "dropout": 0.0,
 "hidden_dropout": 0.0, "attention_dropout": 0.0, "swiglu": false, "rescale_nffn": false, "scale_emb": false,
 "share_emb": false, "layerwise_ckpt": false}
JSON
"$train" --config official.json --print-config >official.txt 2>&1 || fail "an official ModelConf is refused: $(tail -1 official.txt)"
[ "$(grep -c "accepted without effect here: init_mode" official.txt)" -eq 1 ] || fail "official keys not reported once"
printf '{"num_layerz": 2, "share_emb": "yes", "colour": 1}' > bad_official.json
expect_error "every unknown key" "num_layerz'; key 'share_emb' expects true or false, got \"yes\"; unknown key 'colour'" \
  "$train" --config bad_official.json

# SIGKILL after the step-8 checkpoint, then --resume: the metrics equal the uninterrupted run's.
# One run per folder: a second trainer on the folder of a running one is refused naming the holder's pid,
# and the first goes on undisturbed (its metrics are compared below). The first is paused (SIGSTOP) while
# the second tries, so that it cannot finish before: no race.
"$train" "${small[@]}" --steps 24 --out a >a.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ "$(cat a/.lock 2>/dev/null)" = "$pid" ] && break
  sleep 0.05
done
kill -STOP "$pid"
expect_error "a second trainer on a running one's folder" "run folder 'a' is in use by process $pid" \
  "$train" "${small[@]}" --steps 24 --out a --resume
kill -CONT "$pid"
wait "$pid" || fail "the uninterrupted run failed: $(tail -3 a.log)"
"$train" "${small[@]}" --steps 24 --out b >b.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f b/checkpoints/step_00000008.h5 ] && break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ -f b/checkpoints/step_00000024.h5 ] && echo "note: the run finished before the kill; resume is then a no-op"
# The killed run's b/.lock is left behind, but the kernel released its flock: stale, so resume takes it.
"$train" "${small[@]}" --steps 24 --out b --resume >resume.log 2>&1 || fail "resume failed: $(tail -3 resume.log)"
strip() {  # the timings differ between runs
  sed -e 's/,"tokens_per_s":[^,}]*//' -e 's/,"tokens_per_s_per_device":[^,}]*//' -e 's/,"step_ms":[^,}]*//' \
      -e 's/,"mfu":[^,}]*//' -e 's/,"elapsed_s":[^,}]*//' "$1"
}
if ! diff <(strip a/metrics.jsonl) <(strip b/metrics.jsonl) >diff.txt; then
  fail "metrics after SIGKILL + resume differ from the uninterrupted run:"
  head -5 diff.txt
fi
[ "$(wc -l <a/metrics.jsonl)" -eq 25 ] || fail "expected 24 step lines + 1 validation line in a/metrics.jsonl"
grep -Eq '"step":1,"loss":[^,]*,"lr":0(\.0)?,' a/metrics.jsonl && fail "step 1 has learning rate 0 (a step that changes nothing)"

# A corrupted newest checkpoint is skipped with a message; a run directory in use needs --resume.
printf 'not an HDF5 file' > b/checkpoints/step_00000099.h5
"$train" "${small[@]}" --steps 24 --out b --resume >skip.log 2>&1 || fail "resume past a corrupted checkpoint failed"
grep -q "skipping" skip.log || fail "the corrupted checkpoint was not reported"
expect_error "run directory in use" "--resume" "$train" "${small[@]}" --steps 24 --out b

finish train_cli

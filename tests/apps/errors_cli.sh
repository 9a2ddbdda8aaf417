#!/usr/bin/env bash
# Errors that name the cause, and the exit-status scheme (CTest: apps_errors_cli; docs/reliability.md):
# a bad command line exits 2 with "<app>: error: --flag: ..." (numbers out of range or unparsable are
# refused, not clamped); a failure while running exits 1 with one line, no source location unless
# MGL_DEBUG is set; a file error names the path and the OS reason; output that cannot be written (a
# closed stdout, a full disk) is a failure, and a full disk while saving a checkpoint keeps the earlier ones.
#   tests/apps/errors_cli.sh path/to/bin
set -uo pipefail
bin="$(realpath "${1:?usage: errors_cli.sh path/to/bin}")"
# shellcheck source=tests/apps/cli_setup.sh
source "$(dirname "$(realpath "$0")")/cli_setup.sh"
corpus_sample 100000

expect_usage "an unknown flag" "train: error: The following argument was not expected: --bogus" "$bin/train" --bogus
expect_usage "--steps overflow" "--steps: expects a whole number in \[1, " "$bin/train" --steps 99999999999999999999
expect_usage "--steps not a number" "--steps: expects a whole number" "$bin/train" --steps 1e3
expect_usage "a negative seed" "--seed: expects a whole number in \[0, " "$bin/train" --seed -1
expect_usage "--max-new-tokens overflow" "--max-new-tokens: expects a whole number" \
  "$bin/generate" --checkpoint x --max-new-tokens 99999999999999999999
expect_usage "a negative unsigned seed" "--seed: expects a whole number in \[0, " "$bin/generate" --checkpoint x --seed -1
expect_usage "a missing required option" "--checkpoint is required" "$bin/generate" --prompt hi
expect_usage "prepare --seq-len 0" "--seq-len: expects a whole number in \[1, " "$bin/prepare" --input a --out b --seq-len 0
expect_usage "convert without arguments" "convert: error: " "$bin/convert"
# Real-valued flags: NaN, infinities, text and values outside the documented range are usage errors naming
# the flag and the range (docs/reliability.md, "Numeric flags and their ranges").
expect_usage "--temperature nan" "generate: error: --temperature: expects a number in \[0, inf), got 'nan'" \
  "$bin/generate" --checkpoint x --temperature nan
expect_usage "--top-p above 1" "generate: error: --top-p: expects a number in (0, 1], got '1.5'" \
  "$bin/generate" --checkpoint x --top-p 1.5
expect_usage "--repetition-penalty inf" "--repetition-penalty: expects a number in (0, inf), got 'inf'" \
  "$bin/generate" --checkpoint x --repetition-penalty inf
expect_usage "--val-fraction 1" "prepare: error: --val-fraction: expects a number in (0, 1), got '1'" \
  "$bin/prepare" --input a --out b --val-fraction 1
expect_usage "--val-fraction not a number" "--val-fraction: expects a number in (0, 1), got '1%'" \
  "$bin/prepare" --input a --out b --val-fraction 1%
expect_usage "--peak-tflops negative" "bench_train: error: --peak-tflops: expects a number in \[0, 1000000], got '-1'" \
  "$bin/bench_train" --peak-tflops -1
# Config keys out of their range (--set or a file) are runtime errors naming the key and the range; a value
# that is no number (nan, 1e999: JSON has neither) is a wrong type, naming the key.
expect_error "--set optimizer.beta1=1" "train: error: config: optimizer.beta1 must be in \[0, 1), got 1" \
  "$bin/train" --set optimizer.beta1=1
expect_error "--set model.dropout=1" "train: error: config: dropout must be in \[0, 1), got 1" \
  "$bin/train" --set model.dropout=1
expect_error "--set parallel.timeout_s=1e9" "config: parallel.timeout_s must be in (0, 1000000], got 1e+09" \
  "$bin/train" --set parallel.timeout_s=1e9
expect_error "--set optimizer.lr=nan" "config: config key 'optimizer.lr': wrong type" "$bin/train" --set optimizer.lr=nan
echo '{"optimizer": {"lr": 3e-4, "eps": 2}}' >bad_config.json
expect_error "a config file's key out of range" "config: optimizer.eps must be in (0, 1], got 2" \
  "$bin/train" --config bad_config.json

# A runtime error: one line, exit 1, no blank line and no source location; MGL_DEBUG=1 adds the location.
expect_error "a missing checkpoint" "generate: checkpoint 'nowhere' not found" "$bin/generate" --checkpoint nowhere --prompt hi
[ "$(wc -l <"$work/err.txt")" -eq 1 ] || fail "the error is not one line: $(cat "$work/err.txt")"
grep -q '\.cpp:[0-9]*\]' "$work/err.txt" && fail "the error shows a source location without MGL_DEBUG"
MGL_DEBUG=1 "$bin/generate" --checkpoint nowhere --prompt hi 2>debug.txt
grep -q '\[generate\.cpp:[0-9]*\]' debug.txt || fail "MGL_DEBUG=1 does not show the source location: $(cat debug.txt)"
expect_error "a config error" "train: error: config: unknown key 'train.stepz'" "$bin/train" --set train.stepz=3
head -c 1 "$work/err.txt" | grep -q '^$' && fail "the train error starts with a blank line"

# A tiny checkpoint to generate from.
"$bin/train" --data corpus.txt --steps 2 --set train.batch_size=2 --set train.seq_len=64 --set schedule.warmup_steps=1 \
  --set eval.every=0 --set eval.batches=1 --set eval.long_context_tokens=0 --out run >train.log 2>&1 ||
  fail "the tiny run failed: $(tail -3 train.log)"
gen=("$bin/generate" --checkpoint run --max-new-tokens 8)
# A full disk while saving a checkpoint (injected: the step-4 checkpoint's temporary file is /dev/full,
# where every write fails with ENOSPC): the error says so, and the step-2 checkpoint stays valid, so
# --resume continues from it.
tiny=(--data corpus.txt --set train.batch_size=2 --set train.seq_len=64 --set schedule.warmup_steps=1 --set eval.every=0
      --set eval.batches=1 --set eval.long_context_tokens=0 --set train.checkpoint_every=2 --steps 4)
mkdir -p full/checkpoints && ln -s /dev/full full/checkpoints/step_00000004.h5.tmp
expect_error "a full disk at a checkpoint" "step_00000004.h5.tmp': No space left on device" "$bin/train" "${tiny[@]}" --out full
[ -f full/checkpoints/step_00000004.h5 ] && fail "a checkpoint that could not be written was published"
"$bin/train" "${tiny[@]}" --out full --resume >full.log 2>&1 || fail "resume after the full disk failed: $(tail -2 full.log)"
grep -q "step 2" full.log || fail "resume did not continue from the step-2 checkpoint: $(head -5 full.log)"
mkdir folder
expect_error "--score of a directory" "cannot read text file 'folder': Is a directory" "${gen[@]}" --score folder
expect_error "a missing prompt file" "'absent.txt': No such file or directory" "${gen[@]}" --prompt-file absent.txt
# Output that is lost is a failure: a closed stdout, a full disk (/dev/full) while streaming or scoring.
"${gen[@]}" --prompt hi >&- 2>closed.txt
[ $? -eq 1 ] || fail "generate with stdout closed does not exit 1"
grep -q "standard output is closed" closed.txt || fail "stdout closed: $(cat closed.txt)"
expect_error "streaming to a full disk" "cannot write to standard output: No space left on device" \
  bash -c '"$@" >/dev/full' _ "${gen[@]}" --prompt hi
expect_error "scoring to a full disk" "cannot write to standard output: No space left on device" \
  bash -c '"$@" >/dev/full' _ "${gen[@]}" --score corpus.txt

finish errors_cli

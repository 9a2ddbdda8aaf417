#!/usr/bin/env bash
# The train binary under mpirun, end to end (CTest: apps_train_parallel_cli): a bad grid or config, or
# ranks that disagree, end the job with one clear message from rank 0; a hung rank and a killed rank end
# the whole job within a bound, and the last checkpoint before the kill resumes; data-, chunk- and
# tensor-parallel runs log one metrics.jsonl and reach the single-process run's final loss.
#   tests/apps/train_parallel_cli.sh path/to/train
# Every mpirun runs under `timeout`, so that a hang fails the test instead of blocking CI.
set -uo pipefail
train="$(realpath "${1:?usage: train_parallel_cli.sh path/to/train}")"
# shellcheck source=tests/apps/mpi_cli_setup.sh
source "$(dirname "$(realpath "$0")")/mpi_cli_setup.sh"

# expect_job_error "what" "message part" command...: a non-zero exit, the message part on stderr, and
# one "train: error:" line, from rank 0 (no "(this rank)" line from another rank).
expect_job_error() {
  local what="$1" part="$2"
  shift 2
  "$@" >"$work/out.txt" 2>"$work/err.txt"
  local status=$?
  job_timed_out "$what" "$status" && return
  [ "$status" -ne 0 ] || fail "$what: exit status 0, expected non-zero"
  grep -q -- "$part" "$work/err.txt" || { fail "$what: stderr lacks '$part':"; cat "$work/err.txt"; }
  local errors
  errors=$(grep -c "train: error:" "$work/err.txt")
  [ "$errors" -eq 1 ] || { fail "$what: $errors 'train: error:' lines on stderr, expected 1:"; cat "$work/err.txt"; }
  if grep -q "(this rank)" "$work/err.txt"; then fail "$what: a rank other than 0 reported the error:"; cat "$work/err.txt"; fi
}

# why file: the error lines of a job's stderr, or its tail when it has none.
why() { grep -m 3 -e "error" -e "did not complete" "$1" || tail -5 "$1"; }

# last_loss log: the X of the final "train: steps a..b, last loss X" line.
last_loss() { sed -n 's/^train: steps [0-9]*\.\.[0-9]*, last loss \([^,]*\),.*/\1/p' "$1" | tail -1; }

corpus="${MGL_DEFAULT_CORPUS:-/usr/share/dictd/gcide.dict.dz}"
[ -f "$corpus" ] || { echo "FAIL: $corpus missing (dict-gcide; tools/install_deps.sh installs it)"; exit 1; }
head -c 300000 < <(zcat "$corpus") > corpus.txt
small=(--data "$work/corpus.txt" --set train.batch_size=2 --set train.seq_len=64 --set model.chunk_size=32
       --set schedule.warmup_steps=2 --set eval.every=0 --set eval.batches=1 --set eval.long_context_tokens=0
       --set model.dropout=0)
steps=8
start=$SECONDS

# A bad grid or config: rank 0 speaks for every rank, and the job ends non-zero.
expect_job_error "grid larger than the job" "has 3 ranks but the job has 2 processes" \
  "${mpi[@]}" -np 2 "$train" "${small[@]}" --steps "$steps" --out "$work/grid" --set parallel.data=3 --set train.batch_size=3
expect_job_error "batch not divisible over data ranks" "must divide over the parallel.data" \
  "${mpi[@]}" -np 2 "$train" "${small[@]}" --steps "$steps" --out "$work/batch" --set parallel.data=2 --set train.batch_size=3
expect_job_error "seq_len not whole chunks per rank" "must be a multiple of parallel.chunk \* model.chunk_size" \
  "${mpi[@]}" -np 2 "$train" "${small[@]}" --steps "$steps" --out "$work/seq" --set parallel.chunk=2 --set train.seq_len=96
expect_job_error "sizes that do not split over the tensor ranks" "parallel.tensor = 2 must divide model.vocab_size (untied head) = 257" \
  "${mpi[@]}" -np 2 "$train" "${small[@]}" --steps "$steps" --out "$work/tensor_sizes" --set parallel.tensor=2 --set model.vocab_size=257
expect_job_error "configs differ across ranks" "resolved config differs from rank 0" \
  "${mpi[@]}" -np 1 "$train" "${small[@]}" --steps "$steps" --out "$work/mpmd" --set parallel.data=2 --set train.seed=1 \
  : -np 1 "$train" "${small[@]}" --steps "$steps" --out "$work/mpmd" --set parallel.data=2 --set train.seed=2
no_rank_left "the error jobs" "$work/(grid|batch|seq|tensor_sizes|mpmd)"

# The reference: one process.
"$train" "${small[@]}" --steps "$steps" --out "$work/single" >single.log 2>&1 ||
  fail "the single-process run failed: $(tail -3 single.log)"
reference="$(last_loss single.log)"
[ -n "$reference" ] || fail "the single-process run printed no 'last loss' line: $(tail -3 single.log)"

# Data-, chunk- and tensor-parallel runs: exit 0, one metrics.jsonl with one line per step, the same final loss.
for grid in data chunk tensor; do
  run="$work/$grid"
  "${mpi[@]}" -np 2 "$train" "${small[@]}" --steps "$steps" --out "$run" --set "parallel.$grid=2" >"$grid.log" 2>"$grid.err"
  status=$?
  job_timed_out "parallel.$grid=2" "$status" && continue
  if [ "$status" -ne 0 ]; then fail "parallel.$grid=2: exit status $status: $(why "$grid.err")"; continue; fi
  found=$(find "$run" -name 'metrics*.jsonl' | wc -l)
  [ "$found" -eq 1 ] || fail "parallel.$grid=2: $found metrics files in the run folder, expected 1: $(find "$run" -name 'metrics*.jsonl')"
  if [ -f "$run/metrics.jsonl" ]; then
    logged=$(grep '"loss"' "$run/metrics.jsonl" | sed -n 's/^{"step":\([0-9]*\),.*/\1/p' | tr '\n' ' ')
    [ "$logged" = "$(seq -s ' ' 1 "$steps") " ] || fail "parallel.$grid=2: metrics.jsonl logs steps '$logged', expected 1..$steps once each"
    [ "$(wc -l <"$run/metrics.jsonl")" -eq "$(wc -l <"$work/single/metrics.jsonl")" ] ||
      fail "parallel.$grid=2: metrics.jsonl has $(wc -l <"$run/metrics.jsonl") lines, the single-process run's $(wc -l <"$work/single/metrics.jsonl")"
  else
    fail "parallel.$grid=2: no metrics.jsonl in $run"
  fi
  loss="$(last_loss "$grid.log")"
  if [ -z "$loss" ] || [ "$loss" != "$reference" ]; then
    fail "parallel.$grid=2: final loss '$loss', the single-process run's '$reference': $(tail -2 "$grid.log")"
  fi
done
no_rank_left "the parallel runs" "$work/(data|chunk)"

# A hung rank (world rank 1 stops at step 2): the other ends the job within parallel.timeout_s.
began=$SECONDS
MGL_TEST_STALL="1:2" "${mpi[@]}" -np 2 -x MGL_TEST_STALL "$train" "${small[@]}" --steps "$steps" --out "$work/stall" \
  --set parallel.data=2 --set parallel.timeout_s=5 >stall.log 2>stall.err
status=$?
took=$((SECONDS - began))
if ! job_timed_out "a hung rank" "$status"; then
  [ "$status" -ne 0 ] || fail "a hung rank: the job exited 0"
  [ "$took" -le 60 ] || fail "a hung rank: the job took $took s to end (bound 60 s)"
  grep -q "step 2:.*did not complete within 5 s" stall.err ||
    { fail "a hung rank: stderr lacks 'step 2: ... did not complete within 5 s':"; cat stall.err; }
fi
no_rank_left "a hung rank" "$work/stall"

# A rank killed with SIGKILL mid-run: mpirun ends the whole job; the newest checkpoint written before resumes.
run="$work/killed"
"${mpi[@]}" -np 2 "$train" "${small[@]}" --steps 5000 --out "$run" --set parallel.data=2 \
  --set train.checkpoint_every=2 --set train.keep_checkpoints=1000 >killed.log 2>killed.err &
job=$!
for _ in $(seq 1 1200); do  # until 4 steps are logged and a checkpoint is written (at most 120 s)
  kill -0 "$job" 2>/dev/null || break
  [ -f "$run/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$run/metrics.jsonl")" -ge 4 ] &&
    [ -n "$(ls "$run/checkpoints" 2>/dev/null)" ] && break
  sleep 0.1
done
before=$(ls "$run/checkpoints" 2>/dev/null | sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1)
victim=""
for pid in $(pgrep -f -- "--out $run"); do  # the world-rank-1 process, not mpirun or timeout
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$pid
done
if [ -z "$before" ] || [ -z "$victim" ]; then
  fail "a killed rank: no checkpoint ('$before') or no rank-1 process ('$victim') before the job ended or 120 s passed: $(why killed.err)"
  kill "$job" 2>/dev/null
  wait "$job" 2>/dev/null
else
  kill -9 "$victim"
  began=$SECONDS
  while kill -0 "$job" 2>/dev/null && [ $((SECONDS - began)) -le 60 ]; do sleep 0.2; done
  if kill -0 "$job" 2>/dev/null; then
    fail "a killed rank: the job was still running 60 s after rank 1 was killed"
    kill "$job" 2>/dev/null
  fi
  wait "$job"
  status=$?
  [ "$status" -ne 0 ] || fail "a killed rank: the job exited 0"
  [ -f "$run/checkpoints/step_00005000.h5" ] && fail "a killed rank: the run finished before the kill"
  no_rank_left "a killed rank" "--out $run"
  newest=$(ls "$run/checkpoints" | sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' | sort -n | tail -1)
  "$train" "${small[@]}" --steps $((newest + 2)) --out "$run" --resume --set train.checkpoint_every=2 \
    --set train.keep_checkpoints=1000 >resume.log 2>&1 || fail "a killed rank: the resume failed: $(tail -3 resume.log)"
  resumed=$(sed -n 's/.*resumed from .*step_0*\([0-9][0-9]*\)\.h5 at step.*/\1/p' resume.log | tail -1)
  if [ -z "$resumed" ]; then
    fail "a killed rank: the resume printed no 'resumed from' line: $(tail -3 resume.log)"
  elif [ "$resumed" -lt "$before" ]; then
    fail "a killed rank: resumed from step $resumed, older than the step-$before checkpoint written before the kill"
  fi
fi

echo "train_parallel_cli: $((SECONDS - start)) s"
if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "train_parallel_cli: all checks passed"

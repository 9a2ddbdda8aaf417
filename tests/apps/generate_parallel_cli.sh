#!/usr/bin/env bash
# The generate binary under mpirun, end to end (CTest: apps_generate_parallel_cli), against one process:
# --prompts-file over 2 and 3 ranks gives the one-process results (prompt i samples with seed + i), in
# input order, and --output writes them (with tokens, timings and ranks) as the only output; --score of one
# text over 2 and 4 ranks (a pipeline) gives the one-process JSON in both TimestepNorm modes, curve
# included; --score of three files (whole files over 2 ranks, split over 4) gives the one-process lines;
# an error on every rank, or on one rank only, ends the job with one message.
#   tests/apps/generate_parallel_cli.sh path/to/generate path/to/train
# Every mpirun runs under `timeout`, so that a hang fails the test instead of blocking CI.
set -uo pipefail
generate="$(realpath "${1:?usage: generate_parallel_cli.sh path/to/generate path/to/train}")"
train="$(realpath "${2:?usage: generate_parallel_cli.sh path/to/generate path/to/train}")"
command -v python3 >/dev/null || { echo "FAIL: python3 is missing"; exit 1; }
# shellcheck source=tests/apps/mpi_cli_setup.sh
source "$(dirname "$(realpath "$0")")/mpi_cli_setup.sh"
start=$SECONDS
# On the CPU wherever it runs (generate's --device defaults to auto, CUDA on a GPU machine), unless
# MGL_TEST_DEVICE names another device (tools/gpu_parallel_check.sh sets cuda): the ranks' results are
# compared with one process's to 1e-5, and sampling continues from them.
printf '#!/bin/sh\nexec "%s" --device %s "$@"\n' "$generate" "${MGL_TEST_DEVICE:-cpu}" >generate_on_device
chmod +x generate_on_device
generate="$PWD/generate_on_device"

# run_ok "what" out err command...: runs it; false (and a failure showing stderr's tail) unless it exits 0.
run_ok() {
  local what="$1" out="$2" err="$3"
  shift 3
  "$@" >"$out" 2>"$err"
  local status=$?
  job_timed_out "$what" "$status" && return 1
  [ "$status" -eq 0 ] && return 0
  fail "$what: exit status $status: $(tail -3 "$err")"
  return 1
}

# The JSON comparisons (python3): floats within 1e-5 relative, everything else (keys and their order
# included) exact.
cat >check.py <<'EOF'
import json, sys

REL = 1e-5
BASE = ["index", "prompt", "completion", "ids", "finish_reason"]
EXTRA = ["prompt_tokens", "tokens", "batch_size", "prefill_s", "decode_s", "seconds", "rank"]

def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)

def diff(a, b, path="$"):
    """The first difference of b from the expected a, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(b)}, expected {list(a)}"
        for k in a:
            d = diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(b)} items, expected {len(a)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if (isinstance(a, float) or isinstance(b, float)) and number(a) and number(b):
        if a == b or abs(a - b) <= REL * max(abs(a), abs(b)):
            return None
    elif type(a) == type(b) and a == b:
        return None
    return f"{path}: {b!r}, expected {a!r}"

def lines(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        sys.exit(f"{path}: the last line has no newline")
    return [json.loads(line) for line in text.splitlines()]

def bitwise(a, b):
    return " (bitwise equal)" if json.dumps(a) == json.dumps(b) else " (equal within 1e-5)"

def score(expected, got):
    """One --score result: one JSON object each."""
    with open(expected) as f:
        a = json.load(f)
    with open(got) as f:
        b = json.load(f)
    d = diff(a, b)
    if d:
        sys.exit(d)
    print("score" + bitwise(a, b))

def files(expected, got):
    """Several --score files: a JSON line each, "file" first, in input order."""
    a, b = lines(expected), lines(got)
    if len(a) != len(b):
        sys.exit(f"{len(b)} lines, expected {len(a)}")
    for i, (x, y) in enumerate(zip(a, b)):
        if next(iter(y), None) != "file":
            sys.exit(f"line {i + 1}: the first key is not 'file': {list(y)}")
        d = diff(x, y, f"line {i + 1}")
        if d:
            sys.exit(d)
    print("files" + bitwise(a, b))

def prompts(reference, got, ranks, extra, byte_tokenizer):
    """--prompts-file: `got` is the one-process `reference` (printed in batch order), in input order;
    with extra == "extra" it has --output's fields too, consistent with its batches and ranks."""
    ref = sorted(lines(reference), key=lambda r: r["index"])
    out = lines(got)
    if [r.get("index") for r in out] != list(range(len(ref))):
        sys.exit(f"indices {[r.get('index') for r in out]}, expected 0..{len(ref) - 1} in order")
    keys = BASE + (EXTRA if extra == "extra" else [])
    for r, x in zip(out, ref):
        if list(r) != keys:
            sys.exit(f"index {r['index']}: keys {list(r)}, expected {keys}")
        d = diff(x, {k: r[k] for k in BASE}, f"index {r['index']}")
        if d:
            sys.exit(d)
    if extra != "extra":
        print("prompts: equal, in input order")
        return
    batches = {}
    for r in out:
        batches.setdefault(r["prompt_tokens"], []).append(r)
        if not isinstance(r["prompt_tokens"], int) or r["prompt_tokens"] < 1:
            sys.exit(f"index {r['index']}: prompt_tokens {r['prompt_tokens']!r}")
        if byte_tokenizer == "bytes" and r["prompt_tokens"] != len(r["prompt"].encode("utf-8")):
            sys.exit(f"index {r['index']}: prompt_tokens {r['prompt_tokens']}, the prompt has "
                     f"{len(r['prompt'].encode('utf-8'))} bytes (byte tokenizer)")
        if r["tokens"] != len(r["ids"]):
            sys.exit(f"index {r['index']}: tokens {r['tokens']}, but {len(r['ids'])} ids")
        for k in ["prefill_s", "decode_s", "seconds"]:
            if not number(r[k]) or r[k] < 0:
                sys.exit(f"index {r['index']}: {k} {r[k]!r}")
        if not isinstance(r["rank"], int) or not 0 <= r["rank"] < int(ranks):
            sys.exit(f"index {r['index']}: rank {r['rank']!r} outside 0..{int(ranks) - 1}")
    for n, batch in batches.items():
        for k in ["batch_size", "prefill_s", "decode_s", "seconds", "rank"]:
            if len({json.dumps(r[k]) for r in batch}) != 1:
                sys.exit(f"the batch of {n}-token prompts has different {k}: {[r[k] for r in batch]}")
        if batch[0]["batch_size"] != len(batch):
            sys.exit(f"the batch of {n}-token prompts has batch_size {batch[0]['batch_size']}, but {len(batch)} prompts")
    used = sorted({r["rank"] for r in out})
    if used != list(range(min(int(ranks), len(batches)))):
        sys.exit(f"{len(batches)} batches ran on ranks {used}, expected 0..{min(int(ranks), len(batches)) - 1}")
    print(f"prompts: equal, in input order, with --output's fields; {len(batches)} batches on ranks {used}")

def batch_order(plain, output):
    """The plain run prints batch by batch, in the order prompt lengths first appear (from --output's
    prompt_tokens), each batch in input order."""
    recorded = lines(output)
    first = {}
    for r in recorded:
        first.setdefault(r["prompt_tokens"], len(first))
    expected = [r["index"] for r in sorted(recorded, key=lambda r: (first[r["prompt_tokens"]], r["index"]))]
    printed = [r["index"] for r in lines(plain)]
    if printed != expected:
        sys.exit(f"the plain run printed indices {printed}, expected the batch order {expected}")
    print(f"plain run in batch order {printed}")

{"score": score, "files": files, "prompts": prompts, "batch_order": batch_order}[sys.argv[1]](*sys.argv[2:])
EOF
# compare "what" check.py-arguments...: a failure with check.py's message unless they agree.
compare() {
  local what="$1" message
  shift
  if message=$(python3 check.py "$@" 2>&1); then echo "ok: $what: $message"; else fail "$what: $message"; fi
}

# The checkpoint: a tiny model trained for a few steps.
corpus="${MGL_DEFAULT_CORPUS:-/usr/share/dictd/gcide.dict.dz}"
[ -f "$corpus" ] || { echo "FAIL: $corpus missing (dict-gcide; tools/install_deps.sh installs it)"; exit 1; }
head -c 300000 < <(zcat "$corpus") > corpus.txt
"$train" --config tiny --steps 6 --data corpus.txt --out "$work/run" --set train.batch_size=2 --set train.seq_len=64 \
  --set model.chunk_size=32 --set schedule.warmup_steps=2 --set eval.every=0 --set eval.batches=1 \
  --set eval.long_context_tokens=0 >train.log 2>&1 || { echo "FAIL: training the checkpoint failed: $(tail -3 train.log)"; exit 1; }
checkpoint="$work/run"

# --prompts-file: 10 prompts of 6 token lengths (batches of 3, 2, 2, 1, 1, 1 prompts), sampled.
printf '%s\n' "The" "A word" "Of the house" "Cat" "naïve" "Q" "To be or not" "Hello world" "Dog" "An apple a day, " >prompts.txt
sampling=(--prompts-file prompts.txt --max-new-tokens 24 --temperature 0.8 --top-k 20 --seed 7)
if run_ok "prompts, one process" single.jsonl single.err "$generate" --checkpoint "$checkpoint" "${sampling[@]}"; then
  tokenizer=other
  grep -q "(step [0-9]*, bytes," single.err && tokenizer=bytes
  [ "$(wc -l <single.jsonl)" -eq 10 ] || fail "prompts, one process: $(wc -l <single.jsonl) lines, expected 10"
  # One process with --output: the same results in input order, with the extra fields, nothing on stdout.
  mkdir out1
  if run_ok "prompts, one process, --output" out1.txt out1.err "$generate" --checkpoint "$checkpoint" "${sampling[@]}" \
      --output out1/results.jsonl; then
    [ -s out1.txt ] && fail "prompts, one process, --output: stdout is not empty: $(head -c 300 out1.txt)"
    compare "prompts, one process, --output" prompts single.jsonl out1/results.jsonl 1 extra "$tokenizer"
    compare "prompts, one process without --output" batch_order single.jsonl out1/results.jsonl
  fi
  for ranks in 2 3; do
    if run_ok "prompts over $ranks ranks" "np$ranks.jsonl" "np$ranks.err" "${mpi[@]}" -np "$ranks" "$generate" \
        --checkpoint "$checkpoint" "${sampling[@]}"; then
      compare "prompts over $ranks ranks" prompts single.jsonl "np$ranks.jsonl" "$ranks" base "$tokenizer"
    fi
  done
  # --output over 2 ranks: the file holds every result in input order with the extra fields (every rank
  # ran some batches), written atomically (nothing else left in its folder), and stdout stays empty.
  mkdir out2
  if run_ok "prompts over 2 ranks, --output" out2.txt out2.err "${mpi[@]}" -np 2 "$generate" --checkpoint "$checkpoint" \
      "${sampling[@]}" --output "$work/out2/results.jsonl"; then
    [ -s out2.txt ] && fail "prompts over 2 ranks, --output: stdout is not empty: $(head -c 300 out2.txt)"
    [ "$(ls -A out2)" = "results.jsonl" ] || fail "prompts over 2 ranks, --output: the folder holds '$(ls -A out2 | tr '\n' ' ')'"
    [ -f out2/results.jsonl ] && compare "prompts over 2 ranks, --output" prompts single.jsonl out2/results.jsonl 2 extra "$tokenizer"
  fi
fi

# --score of one text (12 KB: 375 chunks, so the windowed mode re-estimates many times): over 2 and 4
# ranks, the one-process JSON, curve included (and the --score-curve file).
tail -c +200001 corpus.txt | head -c 12000 >text.txt
for mode in exact windowed; do
  run_ok "score ($mode), one process" "score1_$mode.json" "score1_$mode.err" "$generate" --checkpoint "$checkpoint" \
    --score text.txt --norm-mode "$mode" --score-curve "curve1_$mode.json" || continue
  for ranks in 2 4; do
    if run_ok "score ($mode) over $ranks ranks" "score${ranks}_$mode.json" "score${ranks}_$mode.err" "${mpi[@]}" \
        -np "$ranks" "$generate" --checkpoint "$checkpoint" --score text.txt --norm-mode "$mode" \
        --score-curve "$work/curve${ranks}_$mode.json"; then
      compare "score ($mode) over $ranks ranks" score "score1_$mode.json" "score${ranks}_$mode.json"
      compare "score ($mode) over $ranks ranks, --score-curve" score "curve1_$mode.json" "curve${ranks}_$mode.json"
    fi
  done
done

# --score of three files of different lengths: whole files over 2 ranks (3 files >= 2 ranks), each split
# over the ranks in turn over 4 (3 files < 4 ranks); either way the one-process lines, in input order.
tail -c +220001 corpus.txt | head -c 6000 >a.txt
tail -c +230001 corpus.txt | head -c 1500 >b.txt
tail -c +240001 corpus.txt | head -c 3500 >c.txt
if run_ok "three files, one process" files1.jsonl files1.err "$generate" --checkpoint "$checkpoint" --score a.txt b.txt c.txt; then
  [ "$(wc -l <files1.jsonl)" -eq 3 ] || fail "three files, one process: $(wc -l <files1.jsonl) lines, expected 3"
  for ranks in 2 4; do
    if run_ok "three files over $ranks ranks" "files$ranks.jsonl" "files$ranks.err" "${mpi[@]}" -np "$ranks" \
        "$generate" --checkpoint "$checkpoint" --score a.txt b.txt c.txt; then
      compare "three files over $ranks ranks" files files1.jsonl "files$ranks.jsonl"
    fi
  done
fi

# expect_job_error "what" "message part" "(this rank)"|"" command...: a non-zero exit within 60 s, nothing
# on stdout, and exactly one line on stderr that starts with "generate: " and holds the message part:
# rank 0's (no "(this rank)") for an error of every rank, else the failing rank's "generate: (this rank) ".
expect_job_error() {
  local what="$1" part="$2" marker="$3"
  shift 3
  local began=$SECONDS
  "$@" >"$work/out.txt" 2>"$work/err.txt"
  local status=$?
  local took=$((SECONDS - began))
  job_timed_out "$what" "$status" && return
  [ "$status" -ne 0 ] || fail "$what: exit status 0, expected non-zero"
  [ "$took" -le 60 ] || fail "$what: the job took $took s to end (bound 60 s)"
  [ -s "$work/out.txt" ] && fail "$what: stdout is not empty: $(head -c 300 "$work/out.txt")"
  local errors
  errors=$(grep -c "^generate: .*$part" "$work/err.txt")
  [ "$errors" -eq 1 ] || { fail "$what: $errors 'generate: ...$part' lines on stderr, expected 1:"; cat "$work/err.txt"; }
  if [ -z "$marker" ]; then
    grep -q "(this rank)" "$work/err.txt" && { fail "$what: a rank other than 0 reported the error:"; cat "$work/err.txt"; }
  else
    grep -q "^generate: (this rank) .*$part" "$work/err.txt" ||
      { fail "$what: the failing rank's line is not 'generate: (this rank) ...':"; cat "$work/err.txt"; }
  fi
  echo "ok: $what (exit $status after $took s)"
}

# An error on every rank: rank 0 speaks for all.
expect_job_error "a missing checkpoint over 2 ranks" "checkpoint '$work/nowhere' not found" "" \
  "${mpi[@]}" -np 2 "$generate" --checkpoint "$work/nowhere" --score text.txt
printf 'The\n\nA word\n' >empty_line.txt
expect_job_error "an empty prompt over 2 ranks" "empty prompt (line 2 of --prompts-file)" "" \
  "${mpi[@]}" -np 2 "$generate" --checkpoint "$checkpoint" --prompts-file "$work/empty_line.txt"
# An error on one rank only (an MPMD launch gives rank 1 other arguments): rank 0 goes on and waits for
# rank 1, which reports its own error and ends the job.
expect_job_error "a checkpoint missing on rank 1 only (--score)" "checkpoint '$work/nowhere' not found" "(this rank)" \
  "${mpi[@]}" -np 1 "$generate" --checkpoint "$checkpoint" --score text.txt \
  : -np 1 "$generate" --checkpoint "$work/nowhere" --score text.txt
expect_job_error "an empty prompt on rank 1 only (--prompts-file)" "empty prompt (line 2 of --prompts-file)" "(this rank)" \
  "${mpi[@]}" -np 1 "$generate" --checkpoint "$checkpoint" --prompts-file "$work/prompts.txt" \
  : -np 1 "$generate" --checkpoint "$checkpoint" --prompts-file "$work/empty_line.txt"
no_rank_left "the error jobs" "$work/(nowhere|empty_line|prompts|text)"

echo "generate_parallel_cli: $((SECONDS - start)) s"
if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "generate_parallel_cli: all checks passed"

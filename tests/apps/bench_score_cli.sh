#!/usr/bin/env bash
# bench_score on the CPU (CTest: apps_bench_score_cli): a tiny config scores a random stream through
# score_tokens and reports its speed and peak memory; bad flags and --profile without a GPU are clear errors.
#   tests/apps/bench_score_cli.sh path/to/bin
set -uo pipefail
bin="$(realpath "${1:?usage: bench_score_cli.sh path/to/bin}")"
# shellcheck source=tests/apps/cli_setup.sh
source "$(dirname "$(realpath "$0")")/cli_setup.sh"

bench=("$bin/bench_score" --config tiny --device cpu --dtype f32 --tokens 1000 --warmup-tokens 100)
"${bench[@]}" >score.txt 2>&1 || fail "the tiny benchmark failed: $(tail -3 score.txt)"
grep -q "^bench_score: tiny (.* parameters), f32, windowed TimestepNorm, chunk 64, 1000 tokens, on cpu" score.txt ||
  fail "no header: $(cat score.txt)"
# 999 predicted tokens; random weights put the mean NLL near log(vocab) = log(256) = 5.55.
result="^  scored 999 tokens in [0-9.]+ s: [0-9]+ tokens/s \([0-9.]+ ms per call of 128 tokens\)"
grep -qE "$result, mean NLL [4-7]\.[0-9]{4}$" score.txt || fail "no result line: $(cat score.txt)"
grep -qE "^  peak device memory while scoring: [0-9.]+ GiB$" score.txt || fail "no memory line: $(cat score.txt)"
"${bench[@]}" --norm-mode exact >exact.txt 2>&1 || fail "--norm-mode exact failed: $(tail -3 exact.txt)"
grep -q "exact TimestepNorm" exact.txt || fail "--norm-mode exact not reported: $(head -1 exact.txt)"

expect_usage "bench_score --tokens 1" "bench_score: error: --tokens: expects a whole number in" "${bench[@]}" --tokens 1
expect_usage "bench_score --norm-mode bad" "--norm-mode" "${bench[@]}" --norm-mode bad
expect_error "bench_score --profile on the CPU" \
  "bench_score: error: --profile records GPU kernels (CUPTI) and needs a CUDA device" "${bench[@]}" --profile
expect_error "bench_score with an unknown config key" "bench_score: error:" "${bench[@]}" --set model.no_such_key=1
finish bench_score_cli

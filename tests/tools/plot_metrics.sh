#!/usr/bin/env bash
# tools/plot_metrics.sh on tests/tools/sample_metrics.jsonl (CTest: tools_plot_metrics): the training and
# validation lines are found whatever the order of their keys, the long-context lines and a line cut by a
# kill are passed over, and a 1200 x 800 PNG is written; a run without training lines is one error.
# Skipped (exit 77) where gnuplot is not installed.
#   tests/tools/plot_metrics.sh path/to/tools/plot_metrics.sh
set -uo pipefail
plot="$(realpath "${1:?usage: tests/tools/plot_metrics.sh path/to/tools/plot_metrics.sh}")"
here="$(dirname "$(realpath "$0")")"
command -v gnuplot >/dev/null || { echo "skipped: gnuplot is not installed (apt-get install gnuplot-nox)"; exit 77; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$work/run"
cp "$here/sample_metrics.jsonl" "$work/run/metrics.jsonl"
out="$(bash "$plot" "$work/run" 2>&1)" || fail "plot_metrics failed: $out"
[ "$out" = "plot_metrics: wrote $work/run/metrics.png (training lines: 3, validation lines: 2)" ] || fail "unexpected: $out"
# A PNG's signature, then the IHDR chunk's width and height (big-endian) at bytes 16..23.
[ "$(head -c 8 "$work/run/metrics.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "not a PNG"
[ "$(od -An -j16 -N8 -tu1 "$work/run/metrics.png" | tr -s ' ')" = " 0 0 4 176 0 0 3 32" ] || fail "not 1200 x 800"

mkdir "$work/empty"
grep val_loss "$here/sample_metrics.jsonl" >"$work/empty/metrics.jsonl"
out="$(bash "$plot" "$work/empty" 2>&1)" && fail "a file without training lines was plotted"
[[ "$out" == *"no training lines in $work/empty/metrics.jsonl"* ]] || fail "unexpected error: $out"
out="$(bash "$plot" "$work/nowhere" 2>&1)" && fail "a missing run was plotted"
[[ "$out" == *"no $work/nowhere/metrics.jsonl"* ]] || fail "unexpected error: $out"
echo "ok"

#!/usr/bin/env bash
# Plots a run's training loss and validation loss against the step to a PNG with gnuplot.
#
#   tools/plot_metrics.sh RUN_DIR [OUT.png] [TITLE]
#
# Reads RUN_DIR/metrics.jsonl (apps/lib/trainer.h: flat JSON objects, one per line; training lines carry
# "loss", validation lines "val_loss") and writes OUT.png (default RUN_DIR/loss.png). Needs gnuplot
# (Debian's gnuplot-nox, installed by tools/install_deps.sh).
set -euo pipefail
run="${1:?usage: tools/plot_metrics.sh RUN_DIR [OUT.png] [TITLE]}"
out="${2:-$run/loss.png}"
title="${3:-$(basename "$run")}"
metrics="$run/metrics.jsonl"
[ -f "$metrics" ] || { echo "plot_metrics: no $metrics" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot_metrics: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The value of a numeric field of a flat JSON line: "name": <number>.
extract() {  # extract FIELD -> "step value" lines for the lines that have FIELD
  sed -n "s/.*\"step\":\([0-9]*\).*\"$1\":\([-+0-9.eE]*\).*/\1 \2/p" "$metrics"
}
extract loss > "$tmp/train.dat"
extract val_loss > "$tmp/val.dat"
[ -s "$tmp/train.dat" ] || { echo "plot_metrics: no training lines in $metrics" >&2; exit 1; }

plots="'$tmp/train.dat' using 1:2 with lines lw 1 lc rgb '#4477aa' title 'train loss'"
if [ -s "$tmp/val.dat" ]; then
  plots="$plots, '$tmp/val.dat' using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc rgb '#cc3311' title 'validation loss'"
fi
gnuplot <<GNUPLOT
set terminal pngcairo size 900,540 enhanced font 'sans,11'
set output '$out'
set title "$title"
set xlabel 'step'
set ylabel 'cross-entropy (nats/token)'
set grid
set key top right
plot $plots
GNUPLOT
echo "plot_metrics: wrote $out"

#!/usr/bin/env bash
# Draws a training run's curves to one PNG with gnuplot: four panels against the step, (1) training loss
# with the validation loss, (2) learning rate, (3) gradient norm (before clipping), (4) tokens/s.
#
#   tools/plot_metrics.sh RUN_DIR [OUT.png] [TITLE]
#
# Reads RUN_DIR/metrics.jsonl (docs/training.md, "Output": one JSON object a line; training lines carry
# "loss", "lr", "grad_norm", "tokens_per_s", validation lines "val_loss") with python3's json module, so
# neither the order of the keys nor the number format matters; a last line cut short by a kill is skipped,
# as the trainer itself does. Writes OUT.png (default RUN_DIR/metrics.png). Needs gnuplot (Debian's
# gnuplot-nox, installed by tools/install_deps.sh) and python3.
set -euo pipefail
run="${1:?usage: tools/plot_metrics.sh RUN_DIR [OUT.png] [TITLE]}"
out="${2:-$run/metrics.png}"
title="${3:-$(basename "$run")}"
metrics="$run/metrics.jsonl"
[ -f "$metrics" ] || { echo "plot_metrics: no $metrics" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot_metrics: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "plot_metrics: python3 not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# train.dat: "step loss lr grad_norm tokens_per_s"; val.dat: "step val_loss"; prints the two counts.
counts="$(python3 - "$metrics" "$tmp" <<'PY'
import json, sys
metrics, tmp = sys.argv[1], sys.argv[2]
train, val = [], []
for line in open(metrics, encoding="utf-8"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if not isinstance(o, dict) or "step" not in o:
        continue
    if "loss" in o:
        train.append((o["step"], o["loss"], o["lr"], o["grad_norm"], o["tokens_per_s"]))
    elif "val_loss" in o:
        val.append((o["step"], o["val_loss"]))
for name, rows in (("train.dat", train), ("val.dat", val)):
    with open(f"{tmp}/{name}", "w") as f:
        f.writelines(" ".join(repr(float(x)) for x in row) + "\n" for row in rows)
print(len(train), len(val))
PY
)"
read -r steps validations <<<"$counts"
[ "$steps" -gt 0 ] || { echo "plot_metrics: no training lines in $metrics" >&2; exit 1; }

loss="'$tmp/train.dat' using 1:2 with lines lw 1 lc rgb '#4477aa' title 'train'"
if [ "$validations" -gt 0 ]; then
  loss="$loss, '$tmp/val.dat' using 1:2 with linespoints pt 7 ps 0.8 lw 2 lc rgb '#cc3311' title 'validation'"
fi
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,800 enhanced font 'sans,10'
set output '$out'
set multiplot layout 2,2 title "$title"
set grid
set xlabel 'step'
set key top right
set title 'loss'
set ylabel 'cross-entropy (nats/token)'
plot $loss
unset key
set title 'learning rate'
set ylabel 'lr'
set format y '%.1e'
plot '$tmp/train.dat' using 1:3 with lines lw 1.5 lc rgb '#228833'
set title 'gradient norm (before clipping)'
set ylabel 'global L2 norm'
set format y '%g'
plot '$tmp/train.dat' using 1:4 with lines lw 1 lc rgb '#aa3377'
set title 'throughput'
set ylabel 'tokens/s'
plot '$tmp/train.dat' using 1:5 with lines lw 1 lc rgb '#ee7733'
unset multiplot
GNUPLOT
echo "plot_metrics: wrote $out (training lines: $steps, validation lines: $validations)"

#!/usr/bin/env bash
# On the GPU machine: our whole training step against a PyTorch Llama of the same size, in one call, so
# that every figure has a same-run ratio (issue 13; docs/perf.md, "Training step").
#   tools/gpu_bench_train.sh [--budget S] [--warmup W] [--steps N] [--build] [--no-reference] [--no-profile]
# For the configs "125M" and "350M" at 8 x 4096 and 1 x 32768 tokens per step, runs build-gpu/bin/bench_train
# (our step: forward, backward, clipping, AdamW on random tokens, bf16 compute, f32 master weights) and
# tools/bench_reference.py (eager PyTorch Llama, SDPA flash attention, fused AdamW) with the same
# --warmup (default 3) and --steps (default 10, the median is reported), one after the other per shape.
# The 125M run at 8 x 4096 also profiles its kernels (bench_train --profile, 3 steps after the timed ones).
#   "125M": mega200M with D 768, V 1536, F 1536 (Z 256, H 1, N 16, G 32, chunk 2048, SiLU FFN, untied head,
#           vocab 32000, 12 layers); the Llama: D 768, 12 layers, 12 heads, SwiGLU 2048.
#   "350M": mega200M with 24 layers; the Llama: D 1024, 24 layers, 16 heads, SwiGLU 2816.
# Our configs are written as config files into the report folder (names and all), so the JSON says which.
# Builds bench_train alone for sm_90 into build-gpu when it is missing (--build: always), like
# tools/gpu_check.sh. --budget S stops starting runs once S seconds have passed since the script began (0:
# none; ~540 inside a 600 s device call); each run is bounded by the time left. Records go to
# $OUT/bench_train (JSON of every run, logs, the profile, table.md); the markdown table comes last.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tools/gpu_common.sh
source tools/gpu_common.sh

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }

budget=0 warmup=3 steps=10 build=0 reference=1 profile=1
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget="${2:-}"; shift 2 ;;
    --warmup) warmup="${2:-}"; shift 2 ;;
    --steps) steps="${2:-}"; shift 2 ;;
    --build) build=1; shift ;;
    --no-reference) reference=0; shift ;;
    --no-profile) profile=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
is_uint "$budget" || die "--budget must be a number of seconds, got '$budget'"
is_uint "$warmup" || die "--warmup must be a whole number, got '$warmup'"
{ is_uint "$steps" && [ "$steps" -ge 1 ]; } || die "--steps must be >= 1, got '$steps'"

build_dir="${BUILD_DIR:-build-gpu}"
bench="$build_dir/bin/bench_train"
report="${OUT:-$PWD/gpu_bench_train_out}/bench_train"
mkdir -p "$report/configs" || die "cannot create $report"

{
  echo "== machine"
  describe_machine
  python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -1
} 2>&1 | tee "$report/machine.txt"

if [ "$build" -eq 1 ] || [ ! -x "$bench" ]; then
  build_gpu "$build_dir" "$report/build.log" bench_train || exit
fi
[ -x "$bench" ] || die "$bench is missing (run with --build)"
if [ "$reference" -eq 1 ] && ! python3 -c 'import torch' 2>/dev/null; then
  echo "no PyTorch here (python3 -c 'import torch' fails): the reference runs are skipped"
  reference=0
fi

cat > "$report/configs/125M.json" <<'JSON'
{"name": "125M", "model": {"preset": "mega200M", "model_dim": 768, "value_dim": 1536, "ffn_hidden_dim": 1536}}
JSON
cat > "$report/configs/350M.json" <<'JSON'
{"name": "350M", "model": {"preset": "mega200M", "num_layers": 24}}
JSON

# run NAME command...: runs under the time the budget leaves (at most 300 s), its output in NAME.log;
# R_STATUS says how it ended.
run() {
  local name="$1"
  shift
  budget_limit "$name" 300 "$budget" || { R_STATUS="skipped (--budget)"; return 1; }
  local limit="$RUN_LIMIT"
  rm -f "$report/$name.json"  # no figures of an earlier call in the table
  timeout -k 10 "$limit" "$@" > "$report/$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then R_STATUS="ok"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then R_STATUS="timeout after ${limit}s"
  elif grep -qiE 'out of memory' "$report/$name.log"; then R_STATUS="out of memory"
  else R_STATUS="failed (exit $rc): $(grep -m1 -iE 'error' "$report/$name.log" | cut -c1-160)"
  fi
  echo "$(stamp) $name: $R_STATUS"
  [ $rc -eq 0 ] && grep -A2 '^| tokens/s' "$report/$name.log" | tail -1
  [ $rc -eq 0 ]
}

rows=()
for config in 125M 350M; do
  for shape in 8x4096 1x32768; do
    batch="${shape%x*}" seq="${shape#*x}"
    ours="ours-$config-$shape" ref="reference-$config-$shape"
    extra=()
    if [ "$profile" -eq 1 ] && [ "$config" = 125M ] && [ "$shape" = 8x4096 ]; then
      extra=(--profile --profile-steps 3 --profile-json "$report/profile-$config-$shape.json")
    fi
    run "$ours" "$bench" --config "$report/configs/$config.json" --device cuda --batch "$batch" --seq-len "$seq" \
      --warmup "$warmup" --steps "$steps" --json "$report/$ours.json" "${extra[@]}"
    ours_status="$R_STATUS"
    ref_status="not run (--no-reference or no PyTorch)"
    if [ "$reference" -eq 1 ]; then
      run "$ref" python3 tools/bench_reference.py --config "$config" --device cuda --batch "$batch" --seq-len "$seq" \
        --warmup "$warmup" --steps "$steps" --json "$report/$ref.json"
      ref_status="$R_STATUS"
    fi
    rows+=("$config|$shape|$ours_status|$ref_status")
  done
done

if [ -f "$report/ours-125M-8x4096.log" ] && grep -q '^kernel profile' "$report/ours-125M-8x4096.log"; then
  echo
  echo "== kernels of 125M at 8 x 4096 (bench_train --profile; all rows in profile-125M-8x4096.json)"
  sed -n '/^kernel profile/,$p' "$report/ours-125M-8x4096.log" | head -40
fi

# The table, from the JSON each run wrote (a run that failed shows its status instead).
python3 - "$report" "${rows[@]}" > "$report/table.md" <<'EOF'
import json, os, sys
report, rows = sys.argv[1], sys.argv[2:]
def load(name):
    try:
        with open(os.path.join(report, name + ".json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def tokens(r, status):
    return "{:,.0f}".format(r["tokens_per_s"]) if r else status
def gib(r):
    return "%.1f" % r["peak_memory_gib"] if r and r.get("peak_memory_gib") is not None else "—"
def mfu(r):
    return "%.1f%%" % (100 * r["mfu"]) if r and r.get("mfu") is not None else "—"
print("| config | tokens/step | ours tok/s | reference tok/s | ours / reference | ours peak GiB | reference peak GiB "
      "| ours MFU | reference MFU | parameters (ours / reference) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    config, shape, ours_status, ref_status = row.split("|", 3)
    ours, ref = load("ours-%s-%s" % (config, shape)), load("reference-%s-%s" % (config, shape))
    ratio = "%.2f" % (ours["tokens_per_s"] / ref["tokens_per_s"]) if ours and ref else "—"
    params = " / ".join("%.1fM" % (r["parameters"] / 1e6) if r else "—" for r in (ours, ref))
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        config, shape.replace("x", " × "), tokens(ours, ours_status), tokens(ref, ref_status), ratio, gib(ours),
        gib(ref), mfu(ours), mfu(ref), params))
EOF
echo
echo "== done in $(elapsed) s; records in $report"
echo
cat "$report/table.md"

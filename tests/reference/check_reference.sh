#!/usr/bin/env bash
# Agreement test of the C++ engine against the PyTorch reference (tests/reference/README.md).
#
# For each test model: make_debug_inputs.py writes random weights/tokens (W.h5, config.json) and the float64
# reference (R.h5); the engine's debug_state writes its logits, loss and gradients (S.h5) on each device;
# compare_debug_state.py checks every tensor's relative error. First the reference checks itself
# (test_reference_selfcheck.py). Prints a summary table; exits 1 if anything failed.
#
# usage: tests/reference/check_reference.sh [DEBUG_STATE] [options]
#   DEBUG_STATE       the debug_state binary (default build-gpu/bin/debug_state); ref_debug_state.py is also
#                     accepted (the reference standing in for the engine, to check this pipeline itself)
#   --devices "LIST"  devices to run debug_state on (default "cpu cuda")
#   --tol X           relative-error tolerance for f32 runs (default 1e-4)
#   --bf16 [X]        also run cuda in bf16, with tolerance X (default 5e-2)
#   --all             also test norm_affine=false and rescale_nffn=true
#   --skip-selfcheck  do not run the reference's self-checks first
#   --work DIR        where the files go (default: a new temporary directory, kept for inspection)
# environment: PYTHON (default python3)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
BIN="build-gpu/bin/debug_state"
DEVICES="cpu cuda"
TOL="1e-4"
BF16_TOL=""
ALL=0
SELFCHECK=1
WORK=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --devices) DEVICES="$2"; shift 2 ;;
    --tol) TOL="$2"; shift 2 ;;
    --bf16)
      if [[ $# -gt 1 && "$2" =~ ^[0-9.eE+-]+$ ]]; then BF16_TOL="$2"; shift 2; else BF16_TOL="5e-2"; shift; fi ;;
    --all) ALL=1; shift ;;
    --skip-selfcheck) SELFCHECK=0; shift ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "check_reference.sh: unknown option $1" >&2; exit 2 ;;
    *) BIN="$1"; shift ;;
  esac
done

if [[ "$BIN" == *.py ]]; then
  RUN_BIN=("$PY" "$BIN")
elif [[ -x "$BIN" ]]; then
  RUN_BIN=("$BIN")
else
  echo "check_reference.sh: debug_state binary '$BIN' not found or not executable (build it first)" >&2
  exit 2
fi
[[ -n "$WORK" ]] || WORK="$(mktemp -d -t megalodon-reference.XXXXXX)"
mkdir -p "$WORK"
SUMMARY="$WORK/summary.tsv"
: > "$SUMMARY"
echo "work directory: $WORK"

if [[ "$SELFCHECK" == 1 ]]; then
  echo "== reference self-checks"
  "$PY" "$HERE/test_reference_selfcheck.py" > "$WORK/selfcheck.log" 2>&1
  status=$?
  tail -n 3 "$WORK/selfcheck.log"
  if [[ "$status" != 0 ]]; then
    echo "FAIL: the reference's self-checks failed (see $WORK/selfcheck.log); not comparing anything" >&2
    exit 1
  fi
fi

# 2 layers, D 64, H 2, Z 32, V 64, F 128, G 8, vocab 300, N 8, chunk 16: with L = 48 there are 3 chunks
SMALL='{"name": "small", "vocab_size": 300, "model_dim": 64, "num_layers": 2, "num_heads": 2, "z_dim": 32, '
SMALL+='"value_dim": 64, "ffn_hidden_dim": 128, "cema_ndim": 8, "norm_num_groups": 8, "chunk_size": 16}'

# case name | --config | --set overrides (space-separated) | batch | seq len | seed
CASES=(
  "test|test||2|24|1"
  "test-short|test||2|5|2"
  "small-swiglu-untied|$SMALL|swiglu=true|2|48|3"
  "small-silu-tied-scaled|$SMALL|swiglu=false share_embedding=true scale_embedding=true|2|48|4"
  "small-silu-untied|$SMALL|swiglu=false|2|48|5"
)
if [[ "$ALL" == 1 ]]; then
  CASES+=("small-noaffine-rescale|$SMALL|swiglu=true norm_affine=false rescale_nffn=true|2|48|6")
fi

FAILED=0
for case in "${CASES[@]}"; do
  IFS='|' read -r name config sets batch seqlen seed <<< "$case"
  dir="$WORK/$name"
  mkdir -p "$dir"
  set_args=()
  for kv in $sets; do set_args+=(--set "$kv"); done
  echo "== $name"
  if ! "$PY" "$HERE/make_debug_inputs.py" --config "$config" "${set_args[@]}" --batch "$batch" \
       --seq-len "$seqlen" --seed "$seed" --out-dir "$dir" > "$dir/make_inputs.log" 2>&1; then
    cat "$dir/make_inputs.log"
    printf '%s\t0\t1\tmake_debug_inputs\tinf\tFAIL\n' "$name" >> "$SUMMARY"
    FAILED=1
    continue
  fi
  cat "$dir/make_inputs.log"
  runs=()
  for dev in $DEVICES; do runs+=("$dev f32 $TOL"); done
  if [[ -n "$BF16_TOL" && " $DEVICES " == *" cuda "* ]]; then runs+=("cuda bf16 $BF16_TOL"); fi
  for run in "${runs[@]}"; do
    read -r dev dtype tol <<< "$run"
    label="$name/$dev/$dtype"
    out="$dir/S_${dev}_${dtype}.h5"
    if ! "${RUN_BIN[@]}" --weights "$dir/W.h5" --config "$dir/config.json" --out "$out" --device "$dev" \
         --dtype "$dtype" > "$dir/debug_state_${dev}_${dtype}.log" 2>&1; then
      echo "FAIL: debug_state failed for $label:"
      tail -n 20 "$dir/debug_state_${dev}_${dtype}.log"
      printf '%s\t0\t1\tdebug_state\tinf\tFAIL\n' "$label" >> "$SUMMARY"
      FAILED=1
      continue
    fi
    if ! "$PY" "$HERE/compare_debug_state.py" "$dir/R.h5" "$out" --tol "$tol" --label "$label" \
         --summary "$SUMMARY" > "$dir/compare_${dev}_${dtype}.txt" 2>&1; then
      cat "$dir/compare_${dev}_${dtype}.txt"
      grep -q "$label" "$SUMMARY" || printf '%s\t0\t1\tcompare_debug_state\tinf\tFAIL\n' "$label" >> "$SUMMARY"
      FAILED=1
    else
      tail -n 1 "$dir/compare_${dev}_${dtype}.txt"
    fi
  done
done

echo
echo "== summary (relative error ||engine - reference|| / ||reference|| per tensor; details in $WORK)"
printf '%-36s %8s %9s  %-44s %11s  %s\n' "case/device/dtype" "tensors" "failures" "worst tensor" "worst error" "result"
while IFS=$'\t' read -r label n nfail worst err result; do
  printf '%-36s %8s %9s  %-44s %11s  %s\n' "$label" "$n" "$nfail" "$worst" "$err" "$result"
done < "$SUMMARY"
if [[ "$FAILED" != 0 ]] || grep -q 'FAIL$' "$SUMMARY"; then
  echo "FAILED"
  exit 1
fi
echo "ALL PASSED"

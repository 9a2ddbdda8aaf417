#!/usr/bin/env bash
# On the GPU machine: how training scales over the GPUs of one host, and the longest context it trains.
#   tools/gpu_parallel_bench.sh [--gpus N] [--config NAME] [--steps S] [--skip-longest] [--build]
#                               [--max-tokens T] [--longest-ckpt off|on|both] [--run-timeout S] [--budget S]
#                               [--backend auto|nccl|mpi] [--data DIR] [--work DIR] [-- more train arguments]
# N defaults to the GPUs nvidia-smi lists, the config to mega200M. Each setting is trained for S steps
# (default 12) and measured as the median tokens/s of the steps after the 4th (metrics.jsonl):
#   1. 1 GPU, 8 x 4096 tokens (the baseline);
#   2. N > 1: data parallelism, DP = N, 8N x 4096 tokens (the same per GPU), without and with parallel.zero=1;
#   3. 1 GPU, 1 x 32768 tokens, and N > 1: chunk parallelism, CP = N, 1 x 32768N tokens (32K per GPU);
#   5. N > 1: tensor parallelism, TP = N, 8 x 4096 tokens (the 1-GPU batch split by layers), and where 4
#      divides N the 3-D grid DP 2 x CP 2 x TP N/4, 16 x 8192 tokens with ZeRO-1;
#   4. unless --skip-longest: the longest sequence that trains (3 steps each, batch 1), doubling from 32768
#      tokens per GPU until out of memory or T per GPU (default 2^21): on 1 GPU without and with
#      model.activation_checkpointing (--longest-ckpt), and N > 1: at CP = N, likewise without and with it.
# Efficiency = tokens/s per device / the 1-GPU tokens/s of the same tokens per GPU. bf16 (train.dtype auto),
# no evaluation during the run, no checkpoint before the last step. Every run gets its own directory under
# the work dir (default runs/parallel-bench; checkpoints are deleted after each run) and is bounded by
# `timeout` (--run-timeout, default 300 s); --budget S stops starting runs once S seconds have passed since
# the script began (0: no budget; use ~540 inside a 600 s device call). The data are the default corpus
# (GCIDE) as bytes, prepared once with a validation split of at least one longest sequence (the trainer
# needs one; GCIDE's SentencePiece split has 171K tokens, too few for 256K-token sequences): a
# tokenizer changes neither speed nor memory, the model keeps its vocabulary. --data DIR uses another
# prepared directory instead. The markdown table comes last; records go to $OUT/parallel_bench
# (table.md, results.tsv, train_logs.txt, metrics.tsv, build.log, machine.txt), the table rewritten after
# every run. Builds (--build, or when a binary is missing) into build-gpu for sm_90, like tools/gpu_check.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tools/gpu_common.sh
source tools/gpu_common.sh

usage() { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; }

gpus="" config="mega200M" steps=12 skip_longest=0 build=0 max_tokens=$(( 1 << 21 )) longest_ckpt="both"
run_timeout=300 budget=0 backend="auto" data="" work="runs/parallel-bench"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) gpus="${2:-}"; shift 2 ;;
    --config) config="${2:-}"; shift 2 ;;
    --steps) steps="${2:-}"; shift 2 ;;
    --skip-longest) skip_longest=1; shift ;;
    --build) build=1; shift ;;
    --max-tokens) max_tokens="${2:-}"; shift 2 ;;
    --longest-ckpt) longest_ckpt="${2:-}"; shift 2 ;;
    --run-timeout) run_timeout="${2:-}"; shift 2 ;;
    --budget) budget="${2:-}"; shift 2 ;;
    --backend) backend="${2:-}"; shift 2 ;;
    --data) data="${2:-}"; shift 2 ;;
    --work) work="${2:-}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

if [ -z "$gpus" ]; then
  gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c .)
  [ "$gpus" -ge 1 ] 2>/dev/null || die "nvidia-smi lists no GPU; pass --gpus N"
fi
at_least() { is_uint "$1" && [ "$1" -ge "$2" ]; }  # VALUE MIN
at_least "$gpus" 1 || die "--gpus must be a positive integer, got '$gpus'"
at_least "$steps" 5 || die "--steps must be >= 5 (the median is over the steps after the 4th), got '$steps'"
at_least "$max_tokens" 32768 || die "--max-tokens must be >= 32768, got '$max_tokens'"
at_least "$run_timeout" 30 || die "--run-timeout must be >= 30 seconds, got '$run_timeout'"
is_uint "$budget" || die "--budget must be a number of seconds, got '$budget'"
case "$longest_ckpt" in off|on|both) ;; *) die "--longest-ckpt must be off, on or both, got '$longest_ckpt'" ;; esac
case "$backend" in auto|nccl|mpi) ;; *) die "--backend must be auto, nccl or mpi, got '$backend'" ;; esac
visible=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c .)
[ "$visible" -eq 0 ] || [ "$gpus" -le "$visible" ] || die "--gpus $gpus but nvidia-smi lists $visible GPUs"

export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
read -r -a mpirun_args <<< "${MPIRUN_ARGS:-}"  # extra mpirun options, e.g. MPIRUN_ARGS="--mca btl ^openib"
build_dir="${BUILD_DIR:-build-gpu}"
bin="$build_dir/bin"
report="${OUT:-$PWD/gpu_parallel_bench_out}/parallel_bench"
mkdir -p "$report" "$work" || die "cannot create $report or $work"
: > "$report/train_logs.txt"
: > "$report/metrics.tsv"
printf 'part\tsetting\tgpus\tbatch\tseq_len\ttokens_per_gpu\ttokens_per_s\tper_device\tefficiency\tpeak_gib\tstatus\n' \
  > "$report/results.tsv"
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
gpu_name="${gpu_name:-an unknown GPU}"

{
  echo "== machine"
  describe_machine
  mpirun --version 2>/dev/null | head -1
} 2>&1 | tee "$report/machine.txt"

if [ "$build" -eq 1 ] || [ ! -x "$bin/train" ] || [ ! -x "$bin/prepare" ]; then
  build_gpu "$build_dir" "$report/build.log" train prepare || exit
fi
[ -x "$bin/train" ] || die "$bin/train is missing (run with --build)"

# The tokens per GPU that decide the longest sequence any run trains (and the data must hold).
longest_tokens=$(( 32768 * gpus ))
[ "$skip_longest" -eq 1 ] || [ $(( max_tokens * gpus )) -le "$longest_tokens" ] || longest_tokens=$(( max_tokens * gpus ))

echo "== data"
if [ -n "$data" ]; then
  [ -f "$data/meta.json" ] || die "--data $data holds no meta.json (prepare it with $bin/prepare)"
  datadir="$data"
else
  corpus="${MGL_DEFAULT_CORPUS:-/usr/share/dictd/gcide.dict.dz}"
  if [ ! -f "$corpus" ]; then
    # Speed and memory do not depend on the text: random base64 stands in when GCIDE is not installed.
    corpus="$work/random-corpus.txt"
    [ -s "$corpus" ] || base64 -w 120 /dev/urandom 2>/dev/null | head -c 40000000 > "$corpus"
    echo "no GCIDE corpus: using 40 MB of random base64 text ($corpus)"
  fi
  corpus_tokens=$(zcat -f "$corpus" | wc -c)  # the byte tokenizer: one token per byte
  [ "$corpus_tokens" -gt 0 ] || die "cannot read the corpus $corpus"
  # The validation split holds one longest window and the training split at least one more.
  copies=$(( (2 * (longest_tokens + 1) + 4096 + corpus_tokens - 1) / corpus_tokens ))
  datadir="$work/data-bytes-$longest_tokens"
  if [ ! -f "$datadir/meta.json" ]; then
    inputs=()
    for (( i = 0; i < copies; i++ )); do inputs+=("$corpus"); done
    timeout -k 10 900 "$bin/prepare" --input "${inputs[@]}" --out "$datadir" --tokenizer bytes --val-fraction 0.01 \
      --seq-len "$longest_tokens" > "$report/prepare.log" 2>&1 || { cat "$report/prepare.log"; die "prepare failed"; }
    rm -f "$report/prepare.log"
  fi
fi
echo "data: $datadir ($(tr -d ' \n' < "$datadir/meta.json" | grep -oE '"(tokenizer|train_tokens|val_tokens)":[^,}]*' | tr '\n' ' '))"

# --- measuring ------------------------------------------------------------------------------------------

# metrics_rows FILE: "step<TAB>tokens_per_s<TAB>tokens_per_s_per_device" for each training step of a
# metrics.jsonl (validation lines and a line cut short by a kill are skipped); per device is empty where the
# binary does not write it.
metrics_rows() {
  if command -v python3 > /dev/null 2>&1; then
    python3 - "$1" <<'EOF'
import json, sys
try:
    lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
except OSError:
    lines = []
for line in lines:
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if not isinstance(o, dict) or "loss" not in o or "tokens_per_s" not in o or "step" not in o:
        continue
    per_device = o.get("tokens_per_s_per_device")
    per_device = "" if per_device is None else "%.3f" % float(per_device)
    print("%d\t%.3f\t%s" % (int(o["step"]), float(o["tokens_per_s"]), per_device))
EOF
  elif command -v jq > /dev/null 2>&1; then
    jq -R -r 'fromjson? | select(type == "object" and has("loss") and has("tokens_per_s") and has("step"))
              | [.step, .tokens_per_s, (.tokens_per_s_per_device // "")] | @tsv' "$1" 2>/dev/null
  else
    echo "gpu_parallel_bench: neither python3 nor jq: cannot read $1" >&2
  fi
}

# median COLUMN SKIP < rows: the median of a column over the rows whose step is > SKIP (all rows if none are).
median() {
  awk -F'\t' -v col="$1" -v skip="$2" '
    $col != "" { all[++n] = $col; if ($1 > skip) kept[++k] = $col }
    END {
      if (k == 0) { for (i = 1; i <= n; i++) kept[i] = all[i]; k = n }
      if (k == 0) { print ""; exit }
      for (i = 2; i <= k; i++) { v = kept[i]; for (j = i - 1; j >= 1 && kept[j] + 0 > v + 0; j--) kept[j + 1] = kept[j]; kept[j + 1] = v }
      printf "%.1f\n", (k % 2) ? kept[(k + 1) / 2] : (kept[k / 2] + kept[k / 2 + 1]) / 2
    }'
}

common=(--set schedule.warmup_steps=1 --set eval.every=0 --set eval.long_context_tokens=0 --set eval.batches=1
        --set train.checkpoint_every=1000000 --set train.keep_checkpoints=1 --set train.log_every=1
        --set train.dtype=auto --set train.grad_accum=1 --set parallel.backend="$backend"
        --set parallel.timeout_s="$run_timeout")

# run_train NAME NP STEPS SKIP [--set ...]: trains in $work/NAME on NP GPUs (mpirun when NP > 1) and sets
# R_TRAINED (1 when every step ran), R_TPS, R_DEV (medians over the steps after SKIP), R_PEAK (GiB, from the
# final line; absent when the run failed after its steps, e.g. in the final validation) and R_STATUS.
run_train() {
  local name="$1" np="$2" nsteps="$3" skip="$4"
  shift 4
  local dir="$work/$name"
  R_TRAINED=0 R_TPS="" R_DEV="" R_PEAK="" R_STATUS=""
  budget_limit "$name" "$run_timeout" "$budget" || { R_STATUS="skipped (--budget)"; return 1; }
  local limit="$RUN_LIMIT"
  rm -rf "$dir"
  mkdir -p "$dir"
  local cmd=("$bin/train" --config "$config" --data "$datadir" --device cuda --out "$dir" --steps "$nsteps"
             "${common[@]}" "$@" "${extra[@]}")
  if [ "$np" -gt 1 ]; then
    cmd=(mpirun -np "$np" --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE "${mpirun_args[@]}" "${cmd[@]}")
  fi
  timeout -k 30 "$limit" "${cmd[@]}" > "$dir/train.log" 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    # A rank that outlived a killed mpirun would hold its GPU: end this run's processes (by their --out).
    sleep 5
    local pids=()
    mapfile -t pids < <(pgrep -f -- "--out $dir --steps")
    if [ "${#pids[@]}" -gt 0 ]; then
      echo "ending leftover processes of $name: ${pids[*]}"
      kill -9 "${pids[@]}" 2> /dev/null
      sleep 2
    fi
  fi
  {
    echo "===== $name (exit $rc, limit ${limit}s): ${cmd[*]}"
    grep -vE '^ |^\{|^\}' "$dir/train.log" | tail -60
  } >> "$report/train_logs.txt"
  local rows
  rows=$(metrics_rows "$dir/metrics.jsonl")
  [ -z "$rows" ] || printf '%s\n' "$rows" | sed "s/^/$name\t/" >> "$report/metrics.tsv"
  local done_steps=0
  [ -z "$rows" ] || done_steps=$(printf '%s\n' "$rows" | awk -F'\t' 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }')
  if [ -n "$rows" ]; then
    R_TPS=$(printf '%s\n' "$rows" | median 2 "$skip")
    R_DEV=$(printf '%s\n' "$rows" | median 3 "$skip")
    [ -n "$R_DEV" ] || R_DEV=$(awk -v t="$R_TPS" -v n="$np" 'BEGIN { printf "%.1f", t / n }')
  fi
  R_PEAK=$(sed -n 's/.*peak device memory \([0-9.]*\) GiB.*/\1/p' "$dir/train.log" | tail -1)
  local oom=0
  grep -qiE 'out of memory|CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation' "$dir/train.log" && oom=1
  if [ "$done_steps" -ge "$nsteps" ]; then
    R_TRAINED=1
    if [ $rc -eq 0 ]; then R_STATUS="ok"
    elif [ $oom -eq 1 ]; then R_STATUS="trained; out of memory after the steps (final validation)"
    else R_STATUS="trained; exit $rc after the steps"
    fi
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then R_STATUS="timeout after ${limit}s (step $done_steps)"
  elif [ $oom -eq 1 ]; then R_STATUS="out of memory"
  else
    local why
    why=$(grep -m1 'train: error' "$dir/train.log" || grep -m1 -iE 'error' "$dir/train.log")
    why=$(printf '%s' "$why" | cut -c1-160)
    R_STATUS="failed (exit $rc)${why:+: $why}"
  fi
  rm -rf "$dir/checkpoints"
  echo "$(stamp) $name: $R_STATUS; ${R_TPS:-?} tokens/s, ${R_DEV:-?} per device, peak ${R_PEAK:-?} GiB"
  [ "$R_TRAINED" -eq 1 ]
}

# --- the table --------------------------------------------------------------------------------------------

fmt() { [ -n "$1" ] && printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' || printf '—'; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "—" }' || printf '—'; }

rows_md=()
long_md=()
# add_row PART SETTING GPUS BATCH SEQ BASELINE: a row for the last run (R_*); BASELINE is the 1-GPU
# tokens/s its per-device rate is compared with, or "self" for a baseline row.
add_row() {
  local part="$1" setting="$2" np="$3" batch="$4" seq="$5" base="$6" eff tokens_per_gpu
  tokens_per_gpu=$(( batch * seq / np ))
  if [ "$R_TRAINED" -eq 1 ]; then
    if [ "$base" = self ]; then eff="1.00 (baseline)"; else eff=$(ratio "$R_DEV" "$base"); fi
    rows_md+=("| $setting | $np | $(fmt "$R_TPS") | $(fmt "$R_DEV") | $eff | ${R_PEAK:-—} |")
  else
    eff="—"
    rows_md+=("| $setting | $np | $R_STATUS | — | — | ${R_PEAK:-—} |")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$part" "$setting" "$np" "$batch" "$seq" "$tokens_per_gpu" \
    "$R_TPS" "$R_DEV" "$eff" "$R_PEAK" "$R_STATUS" >> "$report/results.tsv"
  write_table
}

write_table() {
  {
    echo "$config, $steps steps per setting (median tokens/s of steps 5..$steps), bf16, on $gpu_name"
    echo
    echo "| setting | GPUs | tokens/s (global) | per device | efficiency vs 1 GPU | peak GiB |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows_md[@]}"
    if [ "${#long_md[@]}" -gt 0 ]; then
      echo
      echo "Longest trainable context (batch 1, 3 steps each, tokens/s the median of steps 2-3; doubling from"
      echo "32768 tokens per GPU up to $max_tokens; \"next\" is the first length that did not train):"
      echo
      echo "| setting | GPUs | longest seq_len | tokens per GPU | tokens/s (global) there | peak GiB | next |"
      echo "|---|---|---|---|---|---|---|"
      printf '%s\n' "${long_md[@]}"
    fi
    echo
    echo "Peak GiB: rank 0's high-water mark, the final whole-sequence validation forward included (under CP it"
    echo "runs unsplit on one rank, so it can set the peak); — where a run failed after its steps."
  } > "$report/table.md"
}

# longest_sweep LABEL NP CKPT START: doubles the tokens per GPU from START (at most --max-tokens) until a run
# fails; adds a row to long_md. KNOWN_LEN/KNOWN_* describe a run already made at START / 2 (or none).
longest_sweep() {
  local label="$1" np="$2" ckpt="$3" len="$4"
  local best="" best_tps="" best_peak="" next="cap (--max-tokens $max_tokens)"
  if [ -n "${KNOWN_LEN:-}" ]; then best="$KNOWN_LEN" best_tps="$KNOWN_TPS" best_peak="$KNOWN_PEAK"; fi
  while [ "$len" -le "$max_tokens" ]; do
    local seq=$(( len * np )) set_chunk=()
    [ "$np" -eq 1 ] || set_chunk=(--set parallel.chunk="$np")
    if run_train "longest-$label-$seq" "$np" 3 1 --set train.batch_size=1 --set train.seq_len="$seq" \
         --set model.activation_checkpointing="$ckpt" "${set_chunk[@]}"; then
      best="$len" best_tps="$R_TPS" best_peak="$R_PEAK"
      len=$(( len * 2 ))
    else
      next="seq_len $seq: $R_STATUS"
      break
    fi
  done
  local setting="1 GPU"
  [ "$np" -eq 1 ] || setting="CP=$np"
  [ "$ckpt" = false ] || setting="$setting, activation checkpointing"
  if [ -n "$best" ]; then
    long_md+=("| $setting | $np | $(fmt "$(( best * np ))") | $(fmt "$best") | $(fmt "$best_tps") | ${best_peak:-—} | $next |")
  else
    long_md+=("| $setting | $np | none | — | — | — | $next |")
  fi
  printf 'longest\t%s\t%s\t1\t%s\t%s\t%s\t\t\t%s\t%s\n' "$setting" "$np" "$(( ${best:-0} * np ))" "${best:-0}" \
    "$best_tps" "$best_peak" "next: $next" >> "$report/results.tsv"
  write_table
  LONGEST_BEST="${best:-}"
}

# --- the runs ---------------------------------------------------------------------------------------------

echo "== $config on $gpus GPU(s), $steps steps per setting"
no_ckpt=(--set model.activation_checkpointing=false)

run_train "dp1-b8-s4096" 1 "$steps" 4 --set train.batch_size=8 --set train.seq_len=4096 "${no_ckpt[@]}"
base4k="$R_DEV"
add_row 1 "1 GPU, 8 × 4096" 1 8 4096 self

if [ "$gpus" -gt 1 ]; then
  for zero in 0 1; do
    run_train "dp$gpus-zero$zero-b$(( 8 * gpus ))-s4096" "$gpus" "$steps" 4 --set train.batch_size=$(( 8 * gpus )) \
      --set train.seq_len=4096 --set parallel.data="$gpus" --set parallel.zero="$zero" "${no_ckpt[@]}"
    setting="DP=$gpus, $(( 8 * gpus )) × 4096"
    [ "$zero" -eq 0 ] || setting="$setting, ZeRO-1"
    add_row 2 "$setting" "$gpus" $(( 8 * gpus )) 4096 "$base4k"
  done
fi

run_train "cp1-b1-s32768" 1 "$steps" 4 --set train.batch_size=1 --set train.seq_len=32768 "${no_ckpt[@]}"
base32k="$R_DEV" base32k_trained="$R_TRAINED" base32k_tps="$R_TPS" base32k_peak="$R_PEAK"
add_row 3 "1 GPU, 1 × 32768" 1 1 32768 self

cp_trained=0 cp_tps="" cp_peak=""
if [ "$gpus" -gt 1 ]; then
  run_train "cp$gpus-b1-s$(( 32768 * gpus ))" "$gpus" "$steps" 4 --set train.batch_size=1 \
    --set train.seq_len=$(( 32768 * gpus )) --set parallel.chunk="$gpus" "${no_ckpt[@]}"
  cp_trained="$R_TRAINED" cp_tps="$R_TPS" cp_peak="$R_PEAK"
  add_row 3 "CP=$gpus, 1 × $(( 32768 * gpus ))" "$gpus" 1 $(( 32768 * gpus )) "$base32k"
fi

if [ "$gpus" -gt 1 ]; then
  # Tensor parallelism: the 1-GPU batch split by layers over N GPUs, then the 3-D grid where N allows it
  # (DP 2 x CP 2 x TP N/4: 8 x 4096 tokens per data rank, 4096 per chunk rank).
  run_train "tp$gpus-b8-s4096" "$gpus" "$steps" 4 --set train.batch_size=8 --set train.seq_len=4096 \
    --set parallel.tensor="$gpus" "${no_ckpt[@]}"
  add_row 5 "TP=$gpus, 8 × 4096" "$gpus" 8 4096 "$base4k"
  if [ $(( gpus % 4 )) -eq 0 ]; then
    tp=$(( gpus / 4 ))
    run_train "dp2cp2tp$tp-b16-s8192" "$gpus" "$steps" 4 --set train.batch_size=16 --set train.seq_len=8192 \
      --set parallel.data=2 --set parallel.chunk=2 --set parallel.tensor="$tp" --set parallel.zero=1 "${no_ckpt[@]}"
    add_row 5 "DP=2 × CP=2 × TP=$tp, 16 × 8192, ZeRO-1" "$gpus" 16 8192 "$base4k"
  fi
fi

if [ "$skip_longest" -eq 0 ]; then
  echo "== longest trainable context (up to $max_tokens tokens per GPU)"
  best_off=""
  if [ "$longest_ckpt" != on ]; then
    # 32768 tokens on 1 GPU without activation checkpointing is part 3's baseline.
    KNOWN_LEN="" KNOWN_TPS="" KNOWN_PEAK="" start=32768
    if [ "$base32k_trained" -eq 1 ]; then KNOWN_LEN=32768 KNOWN_TPS="$base32k_tps" KNOWN_PEAK="$base32k_peak" start=65536; fi
    longest_sweep 1gpu 1 false "$start"
    best_off="$LONGEST_BEST"
  fi
  if [ "$longest_ckpt" != off ]; then
    # Recomputation only saves memory: what trains without it trains with it, so the sweep starts above
    # (that length, not run with recomputation, shows no tokens/s or peak if nothing longer trains).
    KNOWN_LEN="" KNOWN_TPS="" KNOWN_PEAK="" start=32768
    [ -z "$best_off" ] || { KNOWN_LEN="$best_off"; start=$(( best_off * 2 )); }
    longest_sweep 1gpu-ckpt 1 true "$start"
  fi
  if [ "$gpus" -gt 1 ]; then
    best_cp=""
    if [ "$longest_ckpt" != on ]; then
      KNOWN_LEN="" KNOWN_TPS="" KNOWN_PEAK="" start=32768
      if [ "$cp_trained" -eq 1 ]; then KNOWN_LEN=32768 KNOWN_TPS="$cp_tps" KNOWN_PEAK="$cp_peak" start=65536; fi
      longest_sweep "cp$gpus" "$gpus" false "$start"
      best_cp="$LONGEST_BEST"
    fi
    if [ "$longest_ckpt" != off ]; then
      KNOWN_LEN="" KNOWN_TPS="" KNOWN_PEAK="" start=32768
      [ -z "$best_cp" ] || { KNOWN_LEN="$best_cp"; start=$(( best_cp * 2 )); }
      longest_sweep "cp$gpus-ckpt" "$gpus" true "$start"
    fi
  fi
fi

echo "== done in $(elapsed) s; records in $report"
echo
cat "$report/table.md"

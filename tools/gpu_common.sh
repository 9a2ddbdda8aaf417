# shellcheck shell=bash
# Sourced by the GPU benchmark scripts (tools/gpu_bench_train.sh, tools/gpu_parallel_bench.sh,
# tools/gpu_ab_bench.sh): argument checks, what every record of theirs starts with, and their build.

t0=$(date +%s)  # when the script began: --budget counts from here
elapsed() { echo $(( $(date +%s) - t0 )); }
stamp() { local s; s=$(elapsed); printf '[%02d:%02d]' $(( s / 60 )) $(( s % 60 )); }

# budget_limit NAME LIMIT BUDGET: the seconds run NAME may take, in RUN_LIMIT: LIMIT, or less when the
# script's --budget (BUDGET seconds since it began; 0: none) leaves less; returns 1, saying so, when under
# 30 s are left.
budget_limit() {
  RUN_LIMIT="$2"
  [ "$3" -gt 0 ] || return 0
  local left=$(( $3 - $(elapsed) ))
  if [ "$left" -lt 30 ]; then
    echo "$(stamp) $1: skipped (--budget)"
    return 1
  fi
  [ "$left" -ge "$RUN_LIMIT" ] || RUN_LIMIT="$left"
}

# die MESSAGE: "<script>: MESSAGE" on stderr, exit status 2 (a bad call).
die() { echo "$(basename "$0" .sh): $*" >&2; exit 2; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# describe_machine: the GPUs, the CUDA compiler, the cores and the commit (marked when the tree has local
# changes), one per line.
describe_machine() {
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1
  nvcc --version 2>/dev/null | tail -1
  echo "cores: $(nproc)"
  local commit
  if commit=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || commit="$commit (+ local changes)"
    echo "commit: $commit"
  fi
}

# build_gpu BUILD_DIR LOG TARGET...: configures BUILD_DIR for sm_90 (Release) and builds only the targets, like
# tools/gpu_check.sh; the output goes to LOG, and on failure its errors to the terminal. Returns the status.
build_gpu() {
  local dir="$1" log="$2" start status
  shift 2
  echo "== build ($dir, sm_90: $*)"
  start=$(date +%s)
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$log" 2>&1 &&
    cmake --build "$dir" -j "$(nproc)" --target "$@" >> "$log" 2>&1
  status=$?
  echo "build: exit $status in $(( $(date +%s) - start )) s"
  if [ $status -ne 0 ]; then
    grep -E "error" -A3 "$log" | head -60
    tail -20 "$log"
  fi
  return $status
}

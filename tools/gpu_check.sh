#!/usr/bin/env bash
# Run on the GPU machine (H100/H200): build for sm_90, run the whole CTest suite including the
# "cuda" label, run the benchmarks, and print a summary. Logs go to $OUT (or ./gpu_check_out).
#   tools/gpu_check.sh                       # build + all tests + benchmarks
#   tools/gpu_check.sh --no-bench            # skip benchmarks
#   tools/gpu_check.sh --no-bench --cuda-only  # only the tests labelled cuda (the CPU ones run everywhere)
# The trainer tests generate their text (tests/support/synthetic_text.h); the command-line tests
# (tests/apps/*_cli.sh, not run by --cuda-only) read dict-gcide: carry .deps (../shared/device/fetch-debs dict-gcide).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$out"
bench=1 labels=()
for arg in "$@"; do
  case "$arg" in
    --no-bench) bench=0 ;;
    --cuda-only) labels=(-L cuda) ;;
    *) echo "gpu_check: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
[ -f .deps/unpack ] && source .deps/unpack
[ -f /opt/deps/usr/share/dictd/gcide.dict.dz ] && export MGL_DEFAULT_CORPUS=/opt/deps/usr/share/dictd/gcide.dict.dz
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvcc --version | tail -1
  nproc
} 2>&1 | tee "$out/machine.txt"

echo "== build"
start=$(date +%s)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1
status=$?
echo "build: exit $status in $(( $(date +%s) - start )) s"
if [ $status -ne 0 ]; then
  grep -E "error" -A3 "$out/build.log" | head -60
  exit $status
fi

echo "== tests"
ctest --test-dir build-gpu "${labels[@]}" --output-on-failure -j 4 --timeout 900 > "$out/ctest.log" 2>&1
test_status=$?
sed 's/\x1b\[[0-9;]*m//g' "$out/ctest.log" | grep -E "worst|FAILED|with expansion" -A1 | grep -vE "^--$" | sort -u | head -60
grep -E "tests passed|tests failed|Test +#|\*\*\*" "$out/ctest.log" | grep -vE "Passed" | head -80
grep -E "^(cpu|cuda) +=" "$out/ctest.log"
for label in cpu cuda; do
  ctest --test-dir build-gpu -L "$label" -N 2>/dev/null | grep -E "^Total Tests" | sed "s/^/$label: /"
done
grep -E "tests passed" "$out/ctest.log"

if [ "$bench" -eq 1 ]; then
  echo "== benchmarks"
  for bench in build-gpu/bin/bench_*; do
    [ -x "$bench" ] || continue
    echo "-- $bench"
    timeout 300 "$bench" 2>&1 | tee -a "$out/bench.log" | tail -20
  done
fi
exit $test_status

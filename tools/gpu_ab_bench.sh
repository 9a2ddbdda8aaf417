#!/usr/bin/env bash
# On the GPU machine: the benchmarks of this tree against those of a baseline tree, in one device call, so
# every comparison is a same-run ratio (docs/perf.md). Each benchmark runs A, B, A, B, ... (--rounds times
# each), interleaved so a drift of the machine's clocks hits both sides alike.
#   tools/gpu_ab_bench.sh --base DIR [--rounds R] [--benches "bench_cema bench_timestep_norm ..."]
# DIR holds the baseline's sources (make it here with `git archive COMMIT | tar -x -C DIR`, in a folder git
# does not ignore so that the device tool carries it, and delete it afterwards). Both trees are built for
# sm_90 (this one into build-gpu, the baseline into DIR/build-gpu, only the benchmark targets). Each
# benchmark's output is collected, baseline first, in $OUT/ab_bench/results.txt (one file: the device tool
# brings back only a few) and printed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=tools/gpu_common.sh
source tools/gpu_common.sh

base="" rounds=2
benches="bench_matmul bench_timestep_norm bench_cema bench_chunk_attention bench_megalodon_block"
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="${2:-}"; shift 2 ;;
    --rounds) rounds="${2:-}"; shift 2 ;;
    --benches) benches="${2:-}"; shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[ -n "$base" ] && [ -f "$base/CMakeLists.txt" ] || die "--base DIR must hold a source tree (no CMakeLists.txt in '$base')"
{ is_uint "$rounds" && [ "$rounds" -ge 1 ]; } || die "--rounds must be a positive integer, got '$rounds'"
out="${OUT:-$PWD/gpu_check_out}/ab_bench"
mkdir -p "$out"

describe_machine | tee "$out/machine.txt"
# Both trees at once, each with build_gpu (the baseline's from inside it: build_gpu builds the tree it is in).
build_gpu build-gpu "$out/build.new.log" $benches &
new_pid=$!
(cd "$base" && build_gpu build-gpu "$out/build.base.log" $benches) || die "the build of $base failed"
wait $new_pid || die "the build of this tree failed"
echo "$(stamp) both builds done"

for bench in $benches; do
  for (( r = 1; r <= rounds; r++ )); do
    for side in base new; do
      bin="build-gpu/bin/$bench"
      [ "$side" = base ] && bin="$base/build-gpu/bin/$bench"
      [ -x "$bin" ] || { echo "gpu_ab_bench: $bin missing (not in the $side tree?)"; continue; }
      timeout 300 "$bin" > "$out/$bench.$side.$r.log" 2>&1 || echo "gpu_ab_bench: $bench ($side) exit $?"
    done
  done
done
for bench in $benches; do
  for side in base new; do
    for (( r = 1; r <= rounds; r++ )); do
      [ -f "$out/$bench.$side.$r.log" ] || continue
      echo "==== $bench ($side, round $r)"
      grep -vE "^\s*$" "$out/$bench.$side.$r.log" | tail -40
      rm -f "$out/$bench.$side.$r.log"
    done
  done
done | tee "$out/results.txt"

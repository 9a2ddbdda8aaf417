#!/usr/bin/env bash
# On the GPU machine: where a decoding step's time goes. Builds bench_decode and times it with
# --breakdown (each kind of launch alone in a graph). With MGL_NCU=1 it then also runs it under Nsight
# Compute (ncu) and lists every kernel of one step (after 20 warm-up steps) with its duration, summed
# per kernel name; ncu runs each kernel alone on an otherwise idle GPU (whose clocks may then be low),
# so its durations overstate those of a real step. Output under $OUT/profile.
#   [MGL_NCU=1] tools/gpu_profile_decode.sh [CONFIG] [DTYPE]
set -uo pipefail
cd "$(dirname "$0")/.."
config="${1:-mega200M}"
dtype="${2:-bf16}"
out="${OUT:-$PWD/gpu_profile_out}/profile"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/cmake.log" 2>&1 ||
  { tail -20 "$out/cmake.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target bench_decode > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }

build-gpu/bin/bench_decode --config "$config" --dtype "$dtype" --breakdown 2>&1 | tee "$out/bench.log"

[ "${MGL_NCU:-0}" = 1 ] || exit 0
# The decoder's kernels only: no baseline, graph only; one step is the kernels between two advances.
kernels='regex:^(embed_kernel|norm_cema_kernel|gemv_kernel|attention_kernel|merge_kernel|advance_kernel)'
steps_skipped=20
per_step=$(( 12 * 7 + 4 ))  # mega200M: 7 launches per layer, 12 layers, + embed, final norm, head, advance
ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum -k "$kernels" \
  --launch-skip $(( steps_skipped * per_step )) --launch-count "$per_step" --csv --print-units base \
  build-gpu/bin/bench_decode --config "$config" --dtype "$dtype" --baseline-tokens 0 --graph-only \
  > "$out/ncu.csv" 2> "$out/ncu.err"
echo "ncu exit $?"; tail -3 "$out/ncu.err"
python3 - "$out/ncu.csv" <<'PY' | tee "$out/summary.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: sys.exit("no ncu rows")
head = rows[0]; name = head.index("Kernel Name"); value = head.index("Metric Value")
total = collections.OrderedDict(); count = collections.Counter(); order = []
for r in rows[1:]:
    k = r[name].split("(")[0].split("<")[0].split("::")[-1]
    ns = float(r[value].replace(",", ""))
    order.append((k, ns)); total[k] = total.get(k, 0) + ns; count[k] += 1
all_ns = sum(total.values())
print(f"{len(order)} kernels, {all_ns/1e3:.1f} us of kernel time per step")
for k, ns in sorted(total.items(), key=lambda kv: -kv[1]):
    print(f"  {k:20s} x{count[k]:3d} {ns/1e3:8.1f} us  {100*ns/all_ns:5.1f}%  ({ns/count[k]/1e3:.2f} us each)")
print("first layer, in order:")
for k, ns in order[:10]: print(f"  {k:20s} {ns/1e3:7.2f} us")
PY

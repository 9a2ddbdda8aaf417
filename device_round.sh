#!/usr/bin/env bash
# One-off device round (not committed): tests of the merged work, then A/B of the training step.
set -uo pipefail
source tools/gpu_common.sh
export NCCL_NVLS_ENABLE=0
O=${OUT:-/tmp/out}; mkdir -p "$O"
S=$O/summary.txt
describe_machine > $S
tests="ops_test_timestep_norm_cuda ops_test_cema_cuda ops_test_softmax_cuda ops_test_cross_entropy_cuda ops_test_chunk_attention_cuda ops_test_matmul_cuda nn_test_megalodon_cuda nn_test_streaming_cuda nn_test_activation_checkpointing_cuda apps_test_scoring_cuda core_test_tensor_cuda ops_test_elementwise_cuda ops_test_reduce_cuda apps_test_kernel_profiler_cuda"
benches="bench_train bench_chunk_attention bench_megalodon_block"
build_gpu build-gpu $O/build.new.log $tests $benches > $O/build_new.txt 2>&1 &
(cd baseline-src && build_gpu build-gpu $O/build.base.log $benches) > $O/build_base.txt 2>&1
wait
cat $O/build_new.txt $O/build_base.txt >> $S
echo "$(stamp) built" >> $S
regex="^($(echo $tests | tr ' ' '|'))\$"
timeout 200 ctest --test-dir build-gpu -R "$regex" --output-on-failure -j 3 --timeout 180 > $O/ctest.log 2>&1
grep -E "tests passed|Failed|FAILED|Timeout|with expansion|worst" -A1 $O/ctest.log | head -40 >> $S
grep -E "Test +#" $O/ctest.log | sed -E 's/.*Test +#[0-9]+: ([^ ]+) .* ([0-9.]+) sec/\2 \1/' >> $S
echo "$(stamp) tested" >> $S
M="--set model.model_dim=768 --set model.value_dim=1536 --set model.ffn_hidden_dim=1536"
for r in 1 2; do
  for side in base new; do
    bin=build-gpu/bin/bench_train; [ $side = base ] && bin=baseline-src/build-gpu/bin/bench_train
    for shape in "8 4096" "1 32768"; do
      set -- $shape
      echo "== bench_train 125M $1x$2 $side round $r" >> $O/bench.log
      timeout 90 $bin --config mega200M $M --batch $1 --seq-len $2 --warmup 3 --steps 10 >> $O/bench.log 2>&1 || echo "exit $?" >> $O/bench.log
    done
  done
done
echo "$(stamp) bench_train done" >> $S
for side in base new; do
  bin=build-gpu/bin/bench_chunk_attention; [ $side = base ] && bin=baseline-src/build-gpu/bin/bench_chunk_attention
  echo "== bench_chunk_attention $side" >> $O/bench.log
  timeout 60 $bin >> $O/bench.log 2>&1 || echo "exit $?" >> $O/bench.log
done
for side in base new; do
  bin=build-gpu/bin/bench_megalodon_block; [ $side = base ] && bin=baseline-src/build-gpu/bin/bench_megalodon_block
  echo "== bench_megalodon_block $side" >> $O/bench.log
  timeout 60 $bin --length 32768 >> $O/bench.log 2>&1 || echo "exit $?" >> $O/bench.log
done
echo "$(stamp) benches done" >> $S
timeout 60 build-gpu/bin/bench_train --config mega200M $M --batch 8 --seq-len 4096 --warmup 3 --steps 3 --profile --profile-top 20 > $O/profile.log 2>&1
echo "$(stamp) profile done" >> $S
grep -E "^== |^\| [0-9]|ms|TFLOP" $O/bench.log >> $S
# compute-sanitizer on quick tests while time is left
san=/usr/local/cuda/bin/compute-sanitizer
for t in core_test_tensor_cuda ops_test_elementwise_cuda ops_test_reduce_cuda ops_test_softmax_cuda ops_test_cross_entropy_cuda ops_test_timestep_norm_cuda ops_test_cema_cuda ops_test_matmul_cuda ops_test_chunk_attention_cuda; do
  for tool in memcheck racecheck; do
    [ $SECONDS -lt 540 ] || { echo "$t $tool: no time" >> $S; continue; }
    left=$(( 560 - SECONDS ))
    timeout $left $san --tool $tool --print-limit 20 build-gpu/tests/$t > $O/san.$t.$tool.log 2>&1; rc=$?
    echo "$t $tool rc=$rc $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases" $O/san.$t.$tool.log | tr '\n' ' ')" >> $S
    cat $O/san.$t.$tool.log >> $O/sanitizer.log; rm -f $O/san.$t.$tool.log
  done
done
cat $S

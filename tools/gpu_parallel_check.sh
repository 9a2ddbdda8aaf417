#!/usr/bin/env bash
# On the GPU machine (one H200 is enough): the parallel code paths with CUDA tensors.
#   tools/gpu_parallel_check.sh [--bench]
# Builds the parallel tests for sm_90 and runs them under mpirun with 2 and 4 ranks sharing the GPU
# (the staged MPI backend; NCCL refuses two ranks on one GPU) and NCCL on one rank, in f32 and bf16:
# the communicators (dist_test_communicator_mpi_cuda), the vocabulary-parallel cross-entropy
# (dist_test_vocab_parallel_cross_entropy_mpi_cuda), the trainer's step under every grid (DP, CP, TP and
# their products) against the single-process GPU step (apps_test_trainer_parallel_mpi_cuda), a text scored
# over the ranks against
# the one-process score (apps_test_scoring_mpi_cuda), generate under mpirun on the GPU
# (tests/apps/generate_parallel_cli.sh with --device cuda), and the CPU parallel tests. With
# --bench it then runs tools/gpu_parallel_bench.sh for the one-GPU baselines. generate_parallel_cli.sh needs
# dict-gcide (carry .deps from ../shared/device/fetch-debs dict-gcide); the C++ tests generate their text.
# Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu_parallel_out}"
mkdir -p "$out"
[ -f .deps/unpack ] && source .deps/unpack
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
[ -f /opt/deps/usr/share/dictd/gcide.dict.dz ] && export MGL_DEFAULT_CORPUS=/opt/deps/usr/share/dictd/gcide.dict.dz

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
tests="dist_test_communicator_mpi_cuda dist_test_vocab_parallel_cross_entropy_mpi_cuda apps_test_trainer_parallel_mpi_cuda
       apps_test_scoring_mpi_cuda dist_test_communicator_mpi dist_test_mappings_mpi dist_test_vocab_parallel_cross_entropy_mpi
       nn_test_chunk_parallel_mpi nn_test_tensor_parallel_mpi apps_test_trainer_parallel_mpi apps_test_scoring_mpi"
targets="train prepare generate $tests"
start=$(date +%s)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target $targets > "$out/build.log" 2>&1 ||
  { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
echo "build: $(( $(date +%s) - start )) s"

status=0
summary=()
for test in $tests; do
  for ranks in 2 4; do
    t0=$(date +%s)
    timeout 500 mpirun -np "$ranks" --oversubscribe --bind-to none build-gpu/tests/$test \
      > "$out/$test.np$ranks.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && status=1
    result=$(sed 's/\x1b\[[0-9;]*m//g' "$out/$test.np$ranks.log" | grep -E "All tests passed|test cases:|SKIPPED" |
             sort | uniq -c | tr '\n' ' ')
    summary+=("| $test | $ranks | $rc | $(( $(date +%s) - t0 )) s | $result |")
    sed 's/\x1b\[[0-9;]*m//g' "$out/$test.np$ranks.log" | grep -E "worst|FAILED" -A2 | grep -vE "^--$" | sort -u | head -20
  done
done
# generate under mpirun with every rank on the GPU (the script's checks with MGL_TEST_DEVICE=cuda).
t0=$(date +%s)
MGL_TEST_DEVICE=cuda bash tests/apps/generate_parallel_cli.sh "$PWD/build-gpu/bin/generate" "$PWD/build-gpu/bin/train" \
  > "$out/generate_cli.np.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
summary+=("| generate_parallel_cli.sh (--device cuda) | 2-4 | $rc | $(( $(date +%s) - t0 )) s | $(tail -1 "$out/generate_cli.np.log") |")
# One log for all (what comes back from the machine is a few files).
for f in "$out"/*.np*.log; do echo "=== $f"; cat "$f"; done > "$out/tests.log" && rm -f "$out"/*.np*.log
echo
echo "| test | ranks | exit | time | result |"
echo "|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
if [ "${1:-}" = "--bench" ]; then
  tools/gpu_parallel_bench.sh --skip-longest --budget 200 2>&1 | tail -20
fi
exit $status

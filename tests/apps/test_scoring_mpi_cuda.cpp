// Scoring one text over ranks sharing the GPU (the staged MPI backend on one GPU; NCCL with a GPU per
// rank), under mpirun with 2 and 4 ranks, in f32 and bf16, against the one-process scoring on the GPU
// (tests/apps/split_scoring_checks.h). The split runs the same kernels on the same calls from the same
// states (carried in f32 in both dtypes), so the results agree to the order of the ranks' sums:
// checked at 1e-5 in f32 and at 1e-2, the engine's bf16 tolerance, in bf16.
#include "split_scoring_checks.h"

MGL_CUDA_TEST_FILE

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("the split score on CUDA equals the one-process score in both TimestepNorm modes") {
  check_split_scores("cuda", DType::f32, 1e-5);
  check_split_scores("cuda", DType::bf16, 1e-2);
}

// dist/vocab_parallel_cross_entropy.h on CUDA tensors (run under mpirun with 2 and 4 ranks, through the
// tensor group's CUDA communicator: NCCL where every rank has its own GPU, staged MPI where ranks share
// one): the loss and each rank's gradient against the single-process f32 cross_entropy on the CPU, for
// f32 and bf16 logits; every row ignored.
#include "dist/vocab_parallel_cross_entropy_suite.h"

MGL_CUDA_TEST_FILE

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("on CUDA tensors the loss and each rank's gradient equal the single-process cross_entropy's") {
  // f32: the GPU's sums (f32, in a tree) against the CPU's (f64 inside); bf16 logits: the gradient is
  // rounded to bf16 (2^-9 ~ 2e-3 relative), the loss computed in f32 from the same rounded logits.
  run_vocab_parallel_suite("cuda", 40, 37, 4.0,
                           {{DType::f32, DType::f32, tolerance_for(DType::f32)},
                            {DType::bf16, DType::f32, tolerance_for(DType::bf16)}});
}

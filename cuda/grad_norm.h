#pragma once
// Sum of squares of one gradient, accumulated in f64, for the global gradient norm of nn/grad_clip.
#include <cstdint>

#include "base/layout.h"

namespace mgl::cuda {

// Blocks of the first pass; `partials` must hold this many doubles.
constexpr int kSumOfSquaresBlocks = 1024;

// *out = sum_k x[k]^2 over `count` contiguous f32 or bf16 values, in f64, deterministically (a fixed
// grid writes one partial per block to `partials`; one block adds them in order). A NaN or inf in x
// makes the result non-finite.
struct SumOfSquaresArgs {
  int64_t count = 0;
  DType dtype = DType::f32;  // of x
  const void* x = nullptr;
  double* partials = nullptr;  // [kSumOfSquaresBlocks]
  double* out = nullptr;       // one value
};
void sum_of_squares(const SumOfSquaresArgs& args, Stream stream);

}  // namespace mgl::cuda

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
void sum_of_squares(const void* x, DType dtype, int64_t count, double* partials, double* out, Stream stream);

}  // namespace mgl::cuda

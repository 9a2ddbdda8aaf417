#pragma once
// Row reductions: out[r] = reduce(in[r, 0..cols)) for a contiguous [rows, cols] input. Every
// reduction over arbitrary dims is brought to this form by ops/reduce.cpp (reduced dims last).
#include "cuda/layout.h"

namespace mgl::cuda {

enum class ReduceOp {
  sum,
  max,   // NaN if any element is NaN; cols must be > 0
  mean,  // sum / cols (NaN for cols = 0, as 0 / 0)
};

void reduce_rows(ReduceOp op, const void* in, void* out, DType dtype, int64_t rows, int64_t cols, Stream stream);

}  // namespace mgl::cuda

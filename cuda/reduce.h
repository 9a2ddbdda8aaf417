#pragma once
// Reductions of contiguous inputs, in the two memory patterns ops/detail/reduce.cpp brings every
// reduction over arbitrary dims to:
//   rows:    out[r] = reduce(in[r, 0..cols))                    the reduced dims are innermost;
//   columns: out[o, k] = reduce(in[o, 0..reduced, k])           the reduced dims are leading or in
//            the middle (a bias gradient sums [tokens, features] over the tokens).
#include "base/layout.h"

namespace mgl::cuda {

enum class ReduceOp {
  sum,
  max,   // NaN if any element is NaN; at least one element per output
  mean,  // sum / count (NaN for count = 0, as 0 / 0)
};

void reduce_rows(ReduceOp op, const void* in, void* out, DType dtype, int64_t rows, int64_t cols, Stream stream);
void reduce_columns(ReduceOp op, const void* in, void* out, DType dtype, int64_t outer, int64_t reduced, int64_t inner,
                    Stream stream);

}  // namespace mgl::cuda

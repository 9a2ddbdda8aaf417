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

// in [rows, cols] -> out [rows].
struct ReduceRowsArgs {
  ReduceOp op = ReduceOp::sum;
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // of in and out
  const void* in = nullptr;
  void* out = nullptr;
};
void reduce_rows(const ReduceRowsArgs& args, Stream stream);

// in [outer, reduced, inner] -> out [outer, inner]. When few outputs share many reduced rows (a bias
// gradient: 768 sums of 32768 rows each) the rows are cut into slices reduced by separate blocks, whose
// partial results go to `workspace` (reduce_columns_workspace_bytes of it, 0 when not needed) and are
// folded in slice order: the same result on every run.
struct ReduceColumnsArgs {
  ReduceOp op = ReduceOp::sum;
  int64_t outer = 0, reduced = 0, inner = 0;
  DType dtype = DType::f32;  // of in and out
  const void* in = nullptr;
  void* out = nullptr;
  void* workspace = nullptr;
};
int64_t reduce_columns_workspace_bytes(const ReduceColumnsArgs& args);
void reduce_columns(const ReduceColumnsArgs& args, Stream stream);

}  // namespace mgl::cuda

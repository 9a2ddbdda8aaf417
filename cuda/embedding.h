#pragma once
// Embedding kernels: the row gather of the forward and the scatter-add of the backward.
#include "base/layout.h"

namespace mgl::cuda {

// out[r, c] = weight[ids[r] * row_stride + c * col_stride] for r < count, c < dim; out is a
// contiguous [count, dim] buffer, ids a contiguous i32 or i64 array already checked to be in range.
struct EmbeddingForwardArgs {
  int64_t count = 0, dim = 0;
  DType dtype = DType::f32;  // of weight and out
  const void* weight = nullptr;
  int64_t row_stride = 0, col_stride = 1;  // of weight, in elements
  const void* ids = nullptr;
  DType id_dtype = DType::i64;
  void* out = nullptr;
};
void embedding_forward(const EmbeddingForwardArgs& args, Stream stream);

// The backward without atomics. The positions are grouped by id on the host: group g is id rows[g],
// which occurs at positions[starts[g]] .. positions[starts[g + 1] - 1] (increasing). The kernel sets
// dweight[rows[g], :] to the sum of those rows of dy, added in that order, so the result is
// deterministic and repeated ids need no atomics. dy is contiguous [count, dim], dweight contiguous
// [vocab, dim]; rows that no id names are not written.
struct EmbeddingBackwardArgs {
  int64_t groups = 0, dim = 0;
  DType dtype = DType::f32;  // of dy and dweight
  const void* dy = nullptr;
  const int64_t* rows = nullptr;       // [groups]
  const int64_t* starts = nullptr;     // [groups + 1]
  const int64_t* positions = nullptr;  // [count]
  void* dweight = nullptr;
};
void embedding_backward(const EmbeddingBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

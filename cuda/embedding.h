#pragma once
// Embedding kernels: the row gather of the forward and the scatter-add of the backward.
#include "base/layout.h"

namespace mgl::cuda {

// out[r, c] = weight[ids[r] * row_stride + c * col_stride] for r < count, c < dim; out is a
// contiguous [count, dim] buffer, ids a contiguous i32 or i64 array already checked to be in range.
void embedding_forward(const void* weight, DType dtype, int64_t row_stride, int64_t col_stride, const void* ids,
                       DType id_dtype, int64_t count, int64_t dim, void* out, Stream stream);

// The backward without atomics. The positions are grouped by id on the host: group g is id rows[g],
// which occurs at positions[starts[g]] .. positions[starts[g + 1] - 1] (increasing). The kernel sets
// dweight[rows[g], :] to the sum of those rows of dy, added in that order, so the result is
// deterministic and repeated ids need no atomics. dy is contiguous [count, dim], dweight contiguous
// [vocab, dim]; rows that no id names are not written.
void embedding_backward(const void* dy, DType dtype, int64_t dim, const int64_t* rows, const int64_t* starts,
                        const int64_t* positions, int64_t groups, void* dweight, Stream stream);

}  // namespace mgl::cuda

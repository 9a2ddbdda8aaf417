// Row reduction: one block per row (row_threads(cols) threads). Each thread folds a strided slice
// of the row in f32 (f64 for f64), reading consecutive elements across the block's threads
// (coalesced), then block_reduce combines the partials. Rows are independent: a grid-stride loop
// over rows.
#include "cuda/reduce.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

template <ReduceOp Op, class M>
__device__ __forceinline__ M combine(M a, M b) {
  if constexpr (Op == ReduceOp::max) return (a != a || a > b) ? a : b;  // a NaN on either side wins
  else return a + b;
}

template <class T, ReduceOp Op>
__global__ void reduce_rows_kernel(const T* in, T* out, int64_t rows, int64_t cols) {
  using M = math_t<T>;
  const M identity = Op == ReduceOp::max ? M(-INFINITY) : M(0);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* p = in + row * cols;
    M acc = identity;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc = combine<Op>(acc, load_math(p + c));
    acc = block_reduce(acc, [](M a, M b) { return combine<Op>(a, b); });
    if (threadIdx.x == 0) store_math(out + row, Op == ReduceOp::mean ? acc / M(cols) : acc);
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const void* in, void* out, DType dtype, int64_t rows, int64_t cols, Stream stream) {
  if (rows == 0) return;
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_floating_storage<T>) {
      auto kernel = op == ReduceOp::max    ? reduce_rows_kernel<T, ReduceOp::max>
                    : op == ReduceOp::mean ? reduce_rows_kernel<T, ReduceOp::mean>
                                           : reduce_rows_kernel<T, ReduceOp::sum>;
      kernel<<<row_blocks(rows), row_threads(cols), 0, stream>>>(static_cast<const T*>(in), static_cast<T*>(out), rows,
                                                                  cols);
    } else {
      MGL_FAIL("reduce: unsupported dtype ", dtype_name(dtype));
    }
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

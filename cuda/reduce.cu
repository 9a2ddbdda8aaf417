// Row reduction: one block of 256 threads per row. Each thread folds a strided slice of the row
// in f32 (f64 for f64), then the block combines the 256 partials with warp shuffles and one
// shared-memory round. Rows are independent, so the grid is simply one block per row.
#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/reduce.h"

namespace mgl::cuda {

namespace {

template <class M>
__device__ __forceinline__ M combine(ReduceOp op, M a, M b) {
  // max propagates NaN: a NaN on either side wins.
  return op == ReduceOp::sum ? a + b : ((a != a || a > b) ? a : b);
}

template <class M>
__device__ M block_reduce(ReduceOp op, M value, M identity) {
  __shared__ M partial[32];
  for (int offset = 16; offset > 0; offset /= 2) value = combine(op, value, __shfl_down_sync(0xffffffffu, value, offset));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = threadIdx.x < blockDim.x / 32 ? partial[lane] : identity;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2) value = combine(op, value, __shfl_down_sync(0xffffffffu, value, offset));
  return value;
}

template <class T, class M>
__global__ void reduce_rows_kernel(ReduceOp op, const T* in, T* out, int64_t rows, int64_t cols) {
  const M identity = op == ReduceOp::sum ? M(0) : M(-INFINITY);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* p = in + row * cols;
    M acc = identity;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc = combine(op, acc, static_cast<M>(load_as_double(p + c)));
    acc = block_reduce(op, acc, identity);
    if (threadIdx.x == 0) store_from_double(out + row, static_cast<double>(acc));
    __syncthreads();  // `partial` is reused by the next row
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const void* in, void* out, DType dtype, int64_t rows, int64_t cols, Stream stream) {
  if (rows == 0) return;
  const unsigned blocks = static_cast<unsigned>(rows < 65535 * 16 ? rows : 65535 * 16);
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>) {
      reduce_rows_kernel<T, double><<<blocks, kThreads, 0, stream>>>(op, static_cast<const T*>(in), static_cast<T*>(out), rows, cols);
    } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>) {
      reduce_rows_kernel<T, float><<<blocks, kThreads, 0, stream>>>(op, static_cast<const T*>(in), static_cast<T*>(out), rows, cols);
    } else {
      MGL_FAIL("reduce: unsupported dtype ", dtype_name(dtype));
    }
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

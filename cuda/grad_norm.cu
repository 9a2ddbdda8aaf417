// Sum of squares in two deterministic passes (no atomics, so the same gradient gives the same bits):
//   pass 1: kSumOfSquaresBlocks blocks x kThreads threads; each thread squares and adds its grid-stride
//           elements in f64, block_reduce folds the block, thread 0 writes partials[block];
//   pass 2: one block of kThreads threads folds the partials into *out.
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/grad_norm.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

struct Add {
  __device__ double operator()(double a, double b) const { return a + b; }
};

template <class T>
__global__ void sum_of_squares_blocks(const T* __restrict__ x, int64_t count, double* __restrict__ partials) {
  double sum = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = to_float(x[i]);
    sum += v * v;
  }
  sum = block_reduce(sum, Add{});
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void sum_partials(const double* __restrict__ partials, int count, double* __restrict__ out) {
  double sum = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_reduce(sum, Add{});
  if (threadIdx.x == 0) *out = sum;
}

}  // namespace

void sum_of_squares(const SumOfSquaresArgs& args, Stream stream) {
  MGL_CHECK(args.dtype == DType::f32 || args.dtype == DType::bf16, "sum_of_squares: expected f32 or bf16, got ",
            dtype_name(args.dtype));
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>) {
      sum_of_squares_blocks<<<kSumOfSquaresBlocks, kThreads, 0, stream>>>(static_cast<const T*>(args.x), args.count,
                                                                         args.partials);
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
  sum_partials<<<1, kThreads, 0, stream>>>(args.partials, kSumOfSquaresBlocks, args.out);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

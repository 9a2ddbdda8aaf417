// Random fills: element i of the tensor (row-major) takes Philox index i of the stream
// (seed, offset), exactly as the CPU code in core/random.cpp does.
#include "base/philox.h"
#include "cuda/common.cuh"
#include "cuda/random.h"

namespace mgl::cuda {

namespace {

// Element i = low + (high - low) u_i (kNormal false: a = low, b = high) or mean + stddev z_i (true:
// a = mean, b = stddev), with u_i, z_i the uniform and normal draws of Philox index i.
template <bool kNormal, class T>
__global__ void random_fill_kernel(T* dst, Layout layout, int64_t count, uint64_t seed, uint64_t offset, double a,
                                   double b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (kNormal) store_from_double(dst + layout.offset_of(i), a + b * philox::normal(seed, offset, i));
    else store_from_double(dst + layout.offset_of(i), a + (b - a) * philox::uniform(seed, offset, i));
  }
}

template <bool kNormal>
void launch_random_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                        double a, double b, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    random_fill_kernel<kNormal><<<blocks_for(count), kThreads, 0, stream>>>(static_cast<T*>(dst), layout, count, seed,
                                                                             offset, a, b);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void uniform_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                  double low, double high, Stream stream) {
  launch_random_fill<false>(dst, dtype, layout, count, seed, offset, low, high, stream);
}

void normal_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                 double mean, double stddev, Stream stream) {
  launch_random_fill<true>(dst, dtype, layout, count, seed, offset, mean, stddev, stream);
}

}  // namespace mgl::cuda

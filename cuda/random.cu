// Random fills: element i of the tensor (row-major) takes Philox index i of the stream
// (seed, offset), exactly as the CPU code in core/random.cpp does.
#include "base/philox.h"
#include "cuda/common.cuh"
#include "cuda/random.h"

namespace mgl::cuda {

namespace {

template <class T>
__global__ void uniform_kernel(T* dst, Layout layout, int64_t count, uint64_t seed, uint64_t offset, double low,
                               double high) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + layout.offset_of(i), low + (high - low) * philox::uniform(seed, offset, i));
}

template <class T>
__global__ void normal_kernel(T* dst, Layout layout, int64_t count, uint64_t seed, uint64_t offset, double mean,
                              double stddev) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + layout.offset_of(i), mean + stddev * philox::normal(seed, offset, i));
}

}  // namespace

void uniform_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                  double low, double high, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    uniform_kernel<<<blocks_for(count), kThreads, 0, stream>>>(static_cast<T*>(dst), layout, count, seed, offset,
                                                               low, high);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void normal_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                 double mean, double stddev, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    normal_kernel<<<blocks_for(count), kThreads, 0, stream>>>(static_cast<T*>(dst), layout, count, seed, offset,
                                                              mean, stddev);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

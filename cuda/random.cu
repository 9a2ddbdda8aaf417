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
void launch_random_fill(const PhiloxFill& f, double a, double b, Stream stream) {
  if (f.count == 0) return;
  dispatch_device_type(f.dtype, [&](auto tag) {
    using T = decltype(tag);
    random_fill_kernel<kNormal><<<blocks_for(f.count), kThreads, 0, stream>>>(static_cast<T*>(f.dst), f.layout,
                                                                               f.count, f.seed, f.offset, a, b);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void uniform_fill(const UniformFillArgs& args, Stream stream) {
  launch_random_fill<false>(args.fill, args.low, args.high, stream);
}

void normal_fill(const NormalFillArgs& args, Stream stream) {
  launch_random_fill<true>(args.fill, args.mean, args.stddev, stream);
}

}  // namespace mgl::cuda

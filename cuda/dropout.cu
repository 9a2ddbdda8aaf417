// Dropout. One Philox block gives four 32-bit words, i.e. the uniforms of four consecutive
// elements (philox::uniform(seed, offset, i) is word i % 4 of block i / 4), so each thread handles
// one aligned group of four elements and runs the 10-round generator once for all of them; with
// one block per element the kernel would be bound by integer throughput rather than memory.
// Grid-stride loop over groups; math in f32 registers (f64 for f64).
#include "base/philox.h"
#include "cuda/common.cuh"
#include "cuda/dropout.h"

namespace mgl::cuda {

namespace {

template <class T, class M, bool Contiguous>
__global__ void dropout_kernel(const T* x, Layout x_layout, T* out, int64_t count, uint64_t seed, uint64_t offset,
                               double p, M scale) {
  const int64_t groups = (count + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const philox::Uint4 bits = philox::block(seed, offset, g);
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = 4 * g + lane;
      if (i >= count) break;
      const bool keep = static_cast<double>(philox::uniform_of_word(philox::word(bits, lane))) >= p;
      const M v = static_cast<M>(load_as_double(x + (Contiguous ? i : x_layout.offset_of(i))));
      store_from_double(out + i, keep ? static_cast<double>(v * scale) : 0.0);
    }
  }
}

}  // namespace

void dropout(const DropoutArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.x_layout.is_contiguous();
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    using M = std::conditional_t<std::is_same_v<T, double>, double, float>;
    auto kernel = contiguous ? dropout_kernel<T, M, true> : dropout_kernel<T, M, false>;
    kernel<<<blocks_for((args.count + 3) / 4), kThreads, 0, stream>>>(
        static_cast<const T*>(args.x), args.x_layout, static_cast<T*>(args.out), args.count, args.seed, args.offset,
        args.p, static_cast<M>(args.scale));
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

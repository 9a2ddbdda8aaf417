// Strided copy / fill / accumulate. One thread per element with a grid-stride loop; each thread
// turns its linear index into element offsets of destination and source with Layout::offset_of.
// These kernels move bytes at whatever layout they are given; contiguous fast paths can come later.
#include "cuda/common.cuh"
#include "cuda/copy.h"

namespace mgl::cuda {

namespace {

// dst = src (kAccumulate false) or dst += src (true), elementwise, converting through double.
template <bool kAccumulate, class Dst, class Src>
__global__ void copy_kernel(Dst* dst, Layout dst_layout, const Src* src, Layout src_layout, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    Dst* d = dst + dst_layout.offset_of(i);
    if constexpr (kAccumulate) store_from_double(d, load_as_double(d) + load_as_double(src + src_layout.offset_of(i)));
    else store_from_double(d, load_as_double(src + src_layout.offset_of(i)));
  }
}

template <class T>
__global__ void fill_kernel(T* dst, Layout layout, int64_t count, double value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + layout.offset_of(i), value);
}

// The launcher of copy_kernel for every pair of dtypes.
template <bool kAccumulate>
void launch_copy(const CopyArgs& args, Stream stream) {
  if (args.count == 0) return;
  dispatch_device_type(args.dst_dtype, [&](auto dst_tag) {
    dispatch_device_type(args.src_dtype, [&](auto src_tag) {
      using Dst = decltype(dst_tag);
      using Src = decltype(src_tag);
      copy_kernel<kAccumulate><<<blocks_for(args.count), kThreads, 0, stream>>>(
          static_cast<Dst*>(args.dst), args.dst_layout, static_cast<const Src*>(args.src), args.src_layout,
          args.count);
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void strided_copy(const CopyArgs& args, Stream stream) { launch_copy<false>(args, stream); }

void accumulate(const CopyArgs& args, Stream stream) { launch_copy<true>(args, stream); }

void fill(const FillArgs& args, Stream stream) {
  if (args.count == 0) return;
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(static_cast<T*>(args.dst), args.layout, args.count,
                                                                 args.value);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

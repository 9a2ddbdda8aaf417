// Strided copy / fill / accumulate. One thread per element with a grid-stride loop; each thread
// turns its linear index into element offsets of destination and source with Layout::offset_of.
// These kernels move bytes at whatever layout they are given; contiguous fast paths can come later.
#include "cuda/common.cuh"
#include "cuda/copy.h"

namespace mgl::cuda {

namespace {

template <class Dst, class Src>
__global__ void strided_copy_kernel(Dst* dst, Layout dst_layout, const Src* src, Layout src_layout, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + dst_layout.offset_of(i), load_as_double(src + src_layout.offset_of(i)));
}

template <class Dst, class Src>
__global__ void accumulate_kernel(Dst* dst, Layout dst_layout, const Src* src, Layout src_layout, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    Dst* d = dst + dst_layout.offset_of(i);
    store_from_double(d, load_as_double(d) + load_as_double(src + src_layout.offset_of(i)));
  }
}

template <class T>
__global__ void fill_kernel(T* dst, Layout layout, int64_t count, double value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + layout.offset_of(i), value);
}

}  // namespace

void strided_copy(void* dst, DType dst_dtype, const Layout& dst_layout, const void* src, DType src_dtype,
                  const Layout& src_layout, int64_t count, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dst_dtype, [&](auto dst_tag) {
    dispatch_device_type(src_dtype, [&](auto src_tag) {
      using Dst = decltype(dst_tag);
      using Src = decltype(src_tag);
      strided_copy_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          static_cast<Dst*>(dst), dst_layout, static_cast<const Src*>(src), src_layout, count);
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void fill(void* dst, DType dtype, const Layout& layout, int64_t count, double value, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<<<blocks_for(count), kThreads, 0, stream>>>(static_cast<T*>(dst), layout, count, value);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void accumulate(void* dst, DType dst_dtype, const Layout& dst_layout, const void* src, DType src_dtype,
                const Layout& src_layout, int64_t count, Stream stream) {
  if (count == 0) return;
  dispatch_device_type(dst_dtype, [&](auto dst_tag) {
    dispatch_device_type(src_dtype, [&](auto src_tag) {
      using Dst = decltype(dst_tag);
      using Src = decltype(src_tag);
      accumulate_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          static_cast<Dst*>(dst), dst_layout, static_cast<const Src*>(src), src_layout, count);
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

// Copy / fill / accumulate on one device.
//
// The general kernels give each thread one element and turn its linear index into the element's
// offsets in destination and source with Layout::offset_of (a division per dimension), converting
// through f64, so that any layout and any pair of dtypes convert exactly as the host does.
//
// Contiguous fast paths. Most copies in training have both sides contiguous: f32 master weights cast
// to bf16 for compute and their gradients cast back, gradient sums in backward, clones. There,
// element i is at dst + i and src + i, so:
//   - same dtype, no accumulation: a device-to-device memcpy;
//   - otherwise a thread takes kPack = 8 consecutive elements, read and written with 16-byte accesses
//     when both pointers are 16-byte aligned (8 bf16 or 2 × 4 f32), one by one otherwise.
// Their arithmetic is bit for bit the general kernels': between f32 and bf16 the values are widened
// to f32 instead of f64, which is exact (every bf16 is an f32), and a sum d + s of two values that
// are both f32 numbers is rounded once in f32 as it is in f64 then rounded to f32: f64 carries more
// than 2 × 24 + 2 bits, so the double rounding is innocuous (Figueroa, "When is double rounding
// innocuous?", 1995), and likewise f32 (24 bits) for two bf16 (8 bits). A bf16 destination
// accumulating an f32 source does not qualify (the source has more bits than bf16), nor do f64 and
// integers: those stay in f64, scalar.
// A row broadcast (a contiguous destination [..., n] from a source whose only non-zero stride is 1 on the
// last dimension: how a linear's bias is spread over its output before the GEMM accumulates onto it)
// reads element i % n. A contiguous zero fill is a memset (0.0 is all zero bits in every dtype); other
// contiguous fills skip the index arithmetic.
#include <cmath>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/copy.h"
#include "cuda/packed_load.cuh"

namespace mgl::cuda {

namespace {

// ---- general (strided) kernels -------------------------------------------------------------------

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

// ---- contiguous kernels -----------------------------------------------------------------------------

// The type the contiguous kernels compute in: f32 where that is exact (see the top), else f64.
template <bool kAccumulate, class Dst, class Src>
using ContiguousMath =
    std::conditional_t<kNarrow<Dst> && kNarrow<Src> &&
                           !(kAccumulate && std::is_same_v<Dst, __nv_bfloat16> && std::is_same_v<Src, float>),
                       float, double>;

// dst = src or dst += src over count contiguous elements: whole packs first, then the tail one by one.
template <bool kAccumulate, bool kVector, class Dst, class Src>
__global__ void contiguous_copy_kernel(Dst* dst, const Src* src, int64_t count) {
  using M = ContiguousMath<kAccumulate, Dst, Src>;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t packs = count / kPack;
  for (int64_t p = first; p < packs; p += stride) {
    M v[kPack];
    load_pack<kVector>(src + p * kPack, v);
    if constexpr (kAccumulate) {
      M d[kPack];
      load_pack<kVector>(dst + p * kPack, d);
#pragma unroll
      for (int j = 0; j < kPack; ++j) v[j] = d[j] + v[j];
    }
    store_pack<kVector>(dst + p * kPack, v);
  }
  for (int64_t i = packs * kPack + first; i < count; i += stride) {
    const M s = widen<M>(src + i);
    narrow(dst + i, kAccumulate ? widen<M>(dst + i) + s : s);
  }
}

// dst[i] = src[i % row] over count contiguous elements (a row of `row` values repeated).
template <class Dst, class Src>
__global__ void row_broadcast_kernel(Dst* dst, const Src* src, int64_t row, int64_t count) {
  using M = ContiguousMath<false, Dst, Src>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    narrow(dst + i, widen<M>(src + i % row));
}

template <class T>
__global__ void contiguous_fill_kernel(T* dst, int64_t count, double value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store_from_double(dst + i, value);
}

// Whether `layout` repeats one contiguous row: stride 1 on the last dimension, 0 (or size 1) elsewhere.
bool is_row_broadcast(const Layout& layout) {
  if (layout.rank == 0 || (layout.shape[layout.rank - 1] != 1 && layout.strides[layout.rank - 1] != 1)) return false;
  for (int d = 0; d < layout.rank - 1; ++d)
    if (layout.shape[d] != 1 && layout.strides[d] != 0) return false;
  return true;
}

// ---- launchers ---------------------------------------------------------------------------------------

template <bool kAccumulate>
void launch_copy(const CopyArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.dst_layout.is_contiguous() && args.src_layout.is_contiguous();
  if (contiguous && !kAccumulate && args.dst_dtype == args.src_dtype) {
    if (args.dst != args.src) {
      MGL_CUDA_CHECK(cudaMemcpyAsync(args.dst, args.src, size_t(args.count) * dtype_size(args.dst_dtype),
                                     cudaMemcpyDeviceToDevice, stream));
    }
    return;
  }
  const bool vector = aligned16(args.dst) && aligned16(args.src);
  const bool row_broadcast = !kAccumulate && args.dst_layout.is_contiguous() && is_row_broadcast(args.src_layout);
  dispatch_device_type(args.dst_dtype, [&](auto dst_tag) {
    dispatch_device_type(args.src_dtype, [&](auto src_tag) {
      using Dst = decltype(dst_tag);
      using Src = decltype(src_tag);
      auto* dst = static_cast<Dst*>(args.dst);
      const auto* src = static_cast<const Src*>(args.src);
      if (row_broadcast && !contiguous) {
        const int64_t row = args.src_layout.shape[args.src_layout.rank - 1];
        row_broadcast_kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(dst, src, row, args.count);
      } else if (!contiguous) {
        copy_kernel<kAccumulate>
            <<<blocks_for(args.count), kThreads, 0, stream>>>(dst, args.dst_layout, src, args.src_layout, args.count);
      } else if (vector) {
        contiguous_copy_kernel<kAccumulate, true>
            <<<blocks_for((args.count + kPack - 1) / kPack), kThreads, 0, stream>>>(dst, src, args.count);
      } else {
        contiguous_copy_kernel<kAccumulate, false>
            <<<blocks_for((args.count + kPack - 1) / kPack), kThreads, 0, stream>>>(dst, src, args.count);
      }
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void strided_copy(const CopyArgs& args, Stream stream) { launch_copy<false>(args, stream); }

void accumulate(const CopyArgs& args, Stream stream) { launch_copy<true>(args, stream); }

void fill(const FillArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.layout.is_contiguous();
  if (contiguous && args.value == 0 && !std::signbit(args.value)) {
    MGL_CUDA_CHECK(cudaMemsetAsync(args.dst, 0, size_t(args.count) * dtype_size(args.dtype), stream));
    return;
  }
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    auto* dst = static_cast<T*>(args.dst);
    if (contiguous) {
      contiguous_fill_kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(dst, args.count, args.value);
    } else {
      fill_kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(dst, args.layout, args.count, args.value);
    }
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

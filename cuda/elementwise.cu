// Elementwise kernels, math in f32 registers (f64 for f64). The op is a template parameter so each op
// compiles to its own tight loop. Strided (broadcast) inputs: one thread per output element, each
// finding its input offsets with Layout::offset_of. Contiguous inputs: a thread takes 8 consecutive
// elements, read and written with 16-byte accesses when every pointer is 16-byte aligned (cuda/packed_load.cuh),
// so a warp moves 512 bytes per access of bf16 instead of 64; the values and their rounding are the same.
#include "cuda/common.cuh"
#include "cuda/elementwise.h"
#include "cuda/packed_load.cuh"

namespace mgl::cuda {

namespace {

template <class T>
__device__ __forceinline__ typename math_type<T>::type load(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(*p);
  else return *p;
}
template <class T, class M>
__device__ __forceinline__ void store(T* p, M v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) *p = __float2bfloat16_rn(v);
  else *p = v;
}

template <class T, UnaryOp Op>
__global__ void unary_kernel(const T* x, Layout x_layout, T* out, int64_t count, double scalar) {
  using M = typename math_type<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store(out + i, apply_unary<M>(Op, load(x + x_layout.offset_of(i)), static_cast<M>(scalar)));
}

template <class T, BinaryOp Op>
__global__ void binary_kernel(const T* a, Layout a_layout, const T* b, Layout b_layout, T* out, int64_t count) {
  using M = typename math_type<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    store(out + i, apply_binary<M>(Op, load(a + a_layout.offset_of(i)), load(b + b_layout.offset_of(i))));
}

// The contiguous kernels: whole packs of kPack elements, then the tail one by one.
template <class T, UnaryOp Op, bool kAligned>
__global__ void unary_contiguous_kernel(const T* x, T* out, int64_t count, double scalar) {
  using M = typename math_type<T>::type;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t packs = count / kPack;
  for (int64_t p = first; p < packs; p += stride) {
    M v[kPack];
    load_pack<kAligned>(x + p * kPack, v);
#pragma unroll
    for (int j = 0; j < kPack; ++j) v[j] = apply_unary<M>(Op, v[j], static_cast<M>(scalar));
    store_pack<kAligned>(out + p * kPack, v);
  }
  for (int64_t i = packs * kPack + first; i < count; i += stride)
    store(out + i, apply_unary<M>(Op, load(x + i), static_cast<M>(scalar)));
}

template <class T, BinaryOp Op, bool kAligned>
__global__ void binary_contiguous_kernel(const T* a, const T* b, T* out, int64_t count) {
  using M = typename math_type<T>::type;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t packs = count / kPack;
  for (int64_t p = first; p < packs; p += stride) {
    M va[kPack], vb[kPack];
    load_pack<kAligned>(a + p * kPack, va);
    load_pack<kAligned>(b + p * kPack, vb);
#pragma unroll
    for (int j = 0; j < kPack; ++j) va[j] = apply_binary<M>(Op, va[j], vb[j]);
    store_pack<kAligned>(out + p * kPack, va);
  }
  for (int64_t i = packs * kPack + first; i < count; i += stride)
    store(out + i, apply_binary<M>(Op, load(a + i), load(b + i)));
}

// Turns a runtime enum into a compile-time one: f(std::integral_constant<Enum, value>{}).
template <class Enum, Enum... Values, class F>
void dispatch_enum(Enum op, F&& f) {
  bool found = ((op == Values ? (f(std::integral_constant<Enum, Values>{}), true) : false) || ...);
  MGL_CHECK(found, "elementwise: unsupported op code ", static_cast<int>(op));
}

template <class F>
void dispatch_unary(UnaryOp op, F&& f) {
  using U = UnaryOp;
  dispatch_enum<U, U::neg, U::exp, U::log, U::sqrt, U::rsqrt, U::tanh, U::sigmoid, U::silu, U::gelu, U::relu,
                U::add_scalar, U::mul_scalar, U::pow_scalar, U::gelu_derivative, U::step>(op, f);
}
template <class F>
void dispatch_binary(BinaryOp op, F&& f) {
  using B = BinaryOp;
  dispatch_enum<B, B::add, B::sub, B::mul, B::div, B::pow, B::eq, B::silu_backward>(op, f);
}

}  // namespace

void unary(const UnaryArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.x_layout.is_contiguous();
  dispatch_float_types(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary(args.op, [&](auto op_constant) {
      constexpr UnaryOp Op = decltype(op_constant)::value;
      const auto* x = static_cast<const T*>(args.x);
      auto* out = static_cast<T*>(args.out);
      if (!contiguous) {
        unary_kernel<T, Op><<<blocks_for(args.count), kThreads, 0, stream>>>(x, args.x_layout, out, args.count,
                                                                             args.scalar);
      } else if (aligned16(x) && aligned16(out)) {
        unary_contiguous_kernel<T, Op, true><<<pack_blocks(args.count), kThreads, 0, stream>>>(x, out, args.count,
                                                                                                args.scalar);
      } else {
        unary_contiguous_kernel<T, Op, false><<<pack_blocks(args.count), kThreads, 0, stream>>>(x, out, args.count,
                                                                                                 args.scalar);
      }
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void binary(const BinaryArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.a_layout.is_contiguous() && args.b_layout.is_contiguous();
  dispatch_float_types(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_binary(args.op, [&](auto op_constant) {
      constexpr BinaryOp Op = decltype(op_constant)::value;
      const auto* a = static_cast<const T*>(args.a);
      const auto* b = static_cast<const T*>(args.b);
      auto* out = static_cast<T*>(args.out);
      if (!contiguous) {
        binary_kernel<T, Op><<<blocks_for(args.count), kThreads, 0, stream>>>(a, args.a_layout, b, args.b_layout, out,
                                                                              args.count);
      } else if (aligned16(a) && aligned16(b) && aligned16(out)) {
        binary_contiguous_kernel<T, Op, true><<<pack_blocks(args.count), kThreads, 0, stream>>>(a, b, out, args.count);
      } else {
        binary_contiguous_kernel<T, Op, false><<<pack_blocks(args.count), kThreads, 0, stream>>>(a, b, out, args.count);
      }
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

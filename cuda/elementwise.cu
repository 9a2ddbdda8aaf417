// Elementwise kernels. One thread per output element, grid-stride loop, math in f32 registers
// (f64 for f64). The op is a template parameter so each op compiles to its own tight loop; inputs
// that are contiguous skip the index arithmetic of strided (broadcast) reads.
#include "cuda/common.cuh"
#include "cuda/elementwise.h"

namespace mgl::cuda {

namespace {

template <class T> struct math_type { using type = float; };
template <> struct math_type<double> { using type = double; };

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

template <class T, UnaryOp Op, bool Contiguous>
__global__ void unary_kernel(const T* x, Layout x_layout, T* out, int64_t count, double scalar) {
  using M = typename math_type<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const M v = load(x + (Contiguous ? i : x_layout.offset_of(i)));
    store(out + i, apply_unary<M>(Op, v, static_cast<M>(scalar)));
  }
}

template <class T, BinaryOp Op, bool Contiguous>
__global__ void binary_kernel(const T* a, Layout a_layout, const T* b, Layout b_layout, T* out, int64_t count) {
  using M = typename math_type<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const M va = load(a + (Contiguous ? i : a_layout.offset_of(i)));
    const M vb = load(b + (Contiguous ? i : b_layout.offset_of(i)));
    store(out + i, apply_binary<M>(Op, va, vb));
  }
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
  dispatch_enum<B, B::add, B::sub, B::mul, B::div, B::pow, B::eq>(op, f);
}

template <class F>
void dispatch_float_types(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    case DType::f64: f(double{}); return;
    default: MGL_FAIL("elementwise kernel: unsupported dtype ", dtype_name(dtype));
  }
}

}  // namespace

void unary(const UnaryArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous = args.x_layout.is_contiguous();
  dispatch_float_types(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_unary(args.op, [&](auto op_constant) {
      constexpr UnaryOp Op = decltype(op_constant)::value;
      auto kernel = contiguous ? unary_kernel<T, Op, true> : unary_kernel<T, Op, false>;
      kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(static_cast<const T*>(args.x), args.x_layout,
                                                              static_cast<T*>(args.out), args.count, args.scalar);
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
      auto kernel = contiguous ? binary_kernel<T, Op, true> : binary_kernel<T, Op, false>;
      kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(static_cast<const T*>(args.a), args.a_layout,
                                                              static_cast<const T*>(args.b), args.b_layout,
                                                              static_cast<T*>(args.out), args.count);
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

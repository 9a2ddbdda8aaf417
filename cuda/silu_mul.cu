// silu_mul's kernels (cuda/silu_mul.h), one grid-stride pass each on the caller's stream: the forward reads a
// and b and writes y, the backward reads dy, a and b and writes da and db, all in f32 registers (f64 for f64)
// with base/silu_mul_math.h's formulas. Contiguous inputs: a thread takes kPack = 8 consecutive elements, read
// and written with 16-byte accesses when every pointer is 16-byte aligned (cuda/packed_load.cuh, as the
// contiguous elementwise kernels do), then the tail one by one. Otherwise one thread per element, each finding
// its inputs' offsets with Layout::offset_of. The values and their rounding are the same on every path.
#include "cuda/silu_mul.h"

#include "cuda/common.cuh"
#include "cuda/packed_load.cuh"

namespace mgl::cuda {

namespace {

// The buffers of one pass: kIn inputs with their layouts, kOut contiguous outputs; P is the pointer type
// (void on the host side, the device storage type in the kernels).
template <class P, int kIn, int kOut>
struct Operands {
  const P* in[kIn];
  Layout layout[kIn];
  P* out[kOut];
};

// The two passes, as functions of kIn values to kOut values in the math type M.
struct Forward {
  static constexpr int kIn = 2, kOut = 1;  // (a, b) -> y
  template <class M>
  __device__ __forceinline__ void operator()(const M (&in)[kIn], M (&out)[kOut]) const {
    out[0] = silu_mul_value(in[0], in[1]);
  }
};
struct Backward {
  static constexpr int kIn = 3, kOut = 2;  // (dy, a, b) -> (da, db)
  template <class M>
  __device__ __forceinline__ void operator()(const M (&in)[kIn], M (&out)[kOut]) const {
    const SiluMulGrads<M> grads = silu_mul_grads(in[0], in[1], in[2]);
    out[0] = grads.da;
    out[1] = grads.db;
  }
};

template <class T, class Pass>
using DeviceOperands = Operands<T, Pass::kIn, Pass::kOut>;

// Output element i: input k read at offset(k), widened; the outputs narrowed (rounded once) into element i.
template <class T, class Pass, class Offset>
__device__ __forceinline__ void apply_at(const DeviceOperands<T, Pass>& ops, int64_t i, Offset offset) {
  using M = typename math_type<T>::type;
  M in[Pass::kIn], out[Pass::kOut];
#pragma unroll
  for (int k = 0; k < Pass::kIn; ++k) in[k] = widen<M>(ops.in[k] + offset(k));
  Pass{}(in, out);
#pragma unroll
  for (int k = 0; k < Pass::kOut; ++k) narrow(ops.out[k] + i, out[k]);
}

template <class T, class Pass>
__global__ void silu_mul_strided_kernel(DeviceOperands<T, Pass> ops, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    apply_at<T, Pass>(ops, i, [&](int k) { return ops.layout[k].offset_of(i); });
}

template <class T, class Pass, bool kAligned>
__global__ void silu_mul_kernel(DeviceOperands<T, Pass> ops, int64_t count) {
  using M = typename math_type<T>::type;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t packs = count / kPack;
  for (int64_t p = first; p < packs; p += stride) {
    M in[Pass::kIn][kPack], out[Pass::kOut][kPack];
#pragma unroll
    for (int k = 0; k < Pass::kIn; ++k) load_pack<kAligned>(ops.in[k] + p * kPack, in[k]);
#pragma unroll
    for (int j = 0; j < kPack; ++j) {
      M x[Pass::kIn], y[Pass::kOut];
#pragma unroll
      for (int k = 0; k < Pass::kIn; ++k) x[k] = in[k][j];
      Pass{}(x, y);
#pragma unroll
      for (int k = 0; k < Pass::kOut; ++k) out[k][j] = y[k];
    }
#pragma unroll
    for (int k = 0; k < Pass::kOut; ++k) store_pack<kAligned>(ops.out[k] + p * kPack, out[k]);
  }
  for (int64_t i = packs * kPack + first; i < count; i += stride) apply_at<T, Pass>(ops, i, [&](int) { return i; });
}

// Picks the kernel: strided unless every input is contiguous, 16-byte accesses when every pointer allows them.
template <class Pass>
void launch(const Operands<void, Pass::kIn, Pass::kOut>& raw, DType dtype, int64_t count, Stream stream) {
  if (count == 0) return;
  bool contiguous = true, aligned = true;
  for (int k = 0; k < Pass::kIn; ++k) {
    contiguous = contiguous && raw.layout[k].is_contiguous();
    aligned = aligned && aligned16(raw.in[k]);
  }
  for (int k = 0; k < Pass::kOut; ++k) aligned = aligned && aligned16(raw.out[k]);
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    DeviceOperands<T, Pass> ops;
    for (int k = 0; k < Pass::kIn; ++k) ops.in[k] = static_cast<const T*>(raw.in[k]), ops.layout[k] = raw.layout[k];
    for (int k = 0; k < Pass::kOut; ++k) ops.out[k] = static_cast<T*>(raw.out[k]);
    if (!contiguous) silu_mul_strided_kernel<T, Pass><<<blocks_for(count), kThreads, 0, stream>>>(ops, count);
    else if (aligned) silu_mul_kernel<T, Pass, true><<<pack_blocks(count), kThreads, 0, stream>>>(ops, count);
    else silu_mul_kernel<T, Pass, false><<<pack_blocks(count), kThreads, 0, stream>>>(ops, count);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void silu_mul_forward(const SiluMulForwardArgs& args, Stream stream) {
  const SiluMulInputs& in = args.in;
  launch<Forward>({{in.a, in.b}, {in.a_layout, in.b_layout}, {args.y}}, in.dtype, in.count, stream);
}

void silu_mul_backward(const SiluMulBackwardArgs& args, Stream stream) {
  const SiluMulInputs& in = args.in;
  launch<Backward>({{args.dy, in.a, in.b}, {args.dy_layout, in.a_layout, in.b_layout}, {args.da, args.db}}, in.dtype,
                   in.count, stream);
}

}  // namespace mgl::cuda

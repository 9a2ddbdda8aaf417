// Selection. One thread per output element, grid-stride loop. Selecting is a copy of one of two
// values, so the values move as raw bits of their size (2, 4 or 8 bytes): one kernel serves every
// dtype of that size, and nothing is converted. The condition is read in its own dtype and tested
// against zero (a NaN counts as true, like any non-zero value). When all three operands are
// contiguous the kernel indexes them directly instead of through Layout::offset_of.
#include "cuda/common.cuh"
#include "cuda/where.h"

namespace mgl::cuda {

namespace {

template <class C>
__device__ __forceinline__ bool nonzero(C c) {
  if constexpr (std::is_same_v<C, __nv_bfloat16>) return __bfloat162float(c) != 0.0f;
  else return c != C(0);
}

template <class C, class Bits, bool Contiguous>
__global__ void where_kernel(const C* condition, Layout condition_layout, const Bits* a, Layout a_layout,
                             const Bits* b, Layout b_layout, Bits* out, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const bool take_a = nonzero(condition[Contiguous ? i : condition_layout.offset_of(i)]);
    out[i] = take_a ? a[Contiguous ? i : a_layout.offset_of(i)] : b[Contiguous ? i : b_layout.offset_of(i)];
  }
}

// Calls f(Bits{}) with an unsigned integer type of the element size of `dtype`.
template <class F>
void dispatch_bits(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    case 8: f(uint64_t{}); return;
    default: MGL_FAIL("where: unsupported dtype ", dtype_name(dtype));
  }
}

}  // namespace

void where(const WhereArgs& args, Stream stream) {
  if (args.count == 0) return;
  const bool contiguous =
      args.condition_layout.is_contiguous() && args.a_layout.is_contiguous() && args.b_layout.is_contiguous();
  dispatch_device_type(args.condition_dtype, [&](auto condition_tag) {
    dispatch_bits(args.dtype, [&](auto bits_tag) {
      using C = decltype(condition_tag);
      using Bits = decltype(bits_tag);
      auto kernel = contiguous ? where_kernel<C, Bits, true> : where_kernel<C, Bits, false>;
      kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(static_cast<const C*>(args.condition),
                                                              args.condition_layout, static_cast<const Bits*>(args.a),
                                                              args.a_layout, static_cast<const Bits*>(args.b),
                                                              args.b_layout, static_cast<Bits*>(args.out), args.count);
    });
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

// silu_mul: y = silu(a) * b = a * s * b, s = sigmoid(a): the SwiGLU product and MEGA's gate in one pass.
// Backward: da = dy * b * s * (1 + a * (1 - s)), db = dy * silu(a), also in one pass.
// a and b have one shape (no broadcasting), one floating dtype and one device, and any strides; computed in f32
// (f64 for f64) and rounded once to the dtype, with the formulas of base/silu_mul_math.h, which the kernels
// (cuda/silu_mul.cu) share.
#include "autograd/node.h"
#include "base/silu_mul_math.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/silu_mul.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace {

template <class T>
using Math = typename compute_type<T>::type;

// The kernels' view of a and b.
cuda::SiluMulInputs kernel_inputs(const Tensor& a, const Tensor& b) {
  cuda::SiluMulInputs in;
  in.count = a.numel();
  in.dtype = a.dtype();
  in.a = a.raw_data();
  in.a_layout = layout_of(a);
  in.b = b.raw_data();
  in.b_layout = layout_of(b);
  return in;
}

// y = silu(a) * b, y contiguous of a's shape (no graph).
Tensor forward(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.is_cpu()) {
    dispatch_floating(a.dtype(), "silu_mul", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      T* py = y.data<T>();
      int64_t i = 0;
      for_each_offset<2>(a.shape(), {a.strides(), b.strides()}, [&](const auto& o) {
        py[i++] = T(silu_mul_value<Math<T>>(Math<T>(pa[o[0]]), Math<T>(pb[o[1]])));
      });
    });
    return y;
  }
  DeviceGuard guard(a.device());
  cuda::SiluMulForwardArgs args;
  args.in = kernel_inputs(a, b);
  args.y = y.raw_data();
  MGL_ON_CUDA(cuda::silu_mul_forward(args, compute_stream(a.device())));
  return y;
}

// {da, db} for the gradient dy of y = silu(a) * b, both contiguous.
std::vector<Tensor> backward(const Tensor& dy, const Tensor& a, const Tensor& b) {
  Tensor da = Tensor::empty(a.shape(), a.dtype(), a.device());
  Tensor db = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (a.is_cpu()) {
    dispatch_floating(a.dtype(), "silu_mul", [&](auto tag) {
      using T = decltype(tag);
      const T* pdy = static_cast<const T*>(dy.raw_data());
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      T* pda = da.data<T>();
      T* pdb = db.data<T>();
      int64_t i = 0;
      for_each_offset<3>(a.shape(), {dy.strides(), a.strides(), b.strides()}, [&](const auto& o) {
        const SiluMulGrads<Math<T>> g = silu_mul_grads(Math<T>(pdy[o[0]]), Math<T>(pa[o[1]]), Math<T>(pb[o[2]]));
        pda[i] = T(g.da);
        pdb[i++] = T(g.db);
      });
    });
    return {da, db};
  }
  DeviceGuard guard(a.device());
  cuda::SiluMulBackwardArgs args;
  args.in = kernel_inputs(a, b);
  args.dy = dy.raw_data();
  args.dy_layout = layout_of(dy);
  args.da = da.raw_data();
  args.db = db.raw_data();
  MGL_ON_CUDA(cuda::silu_mul_backward(args, compute_stream(a.device())));
  return {da, db};
}

}  // namespace

Tensor silu_mul(const Tensor& a, const Tensor& b) {
  detail::check_compatible("silu_mul", a, b);
  MGL_CHECK(a.shape() == b.shape(), "silu_mul: a and b must have the same shape (no broadcasting), got ",
            a.describe(), " and ", b.describe());
  Tensor y = forward(a, b);
  autograd::record("silu_mul", {a, b}, {y}, [a = a.detach(), b = b.detach()](const std::vector<Tensor>& g) {
    return backward(g[0], a, b);
  });
  return y;
}

}  // namespace mgl

#include "ops/detail/elementwise.h"

#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/elementwise.h"

namespace mgl::detail {

void check_floating(const char* op, const Tensor& x) {
  MGL_CHECK(x.defined(), op, ": input is an undefined tensor");
  MGL_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor, got ", x.describe());
}

void check_compatible(const char* op, const Tensor& a, const Tensor& b) {
  check_floating(op, a);
  check_floating(op, b);
  MGL_CHECK(a.device() == b.device(), op, ": inputs on different devices: ", a.describe(), " and ", b.describe());
  MGL_CHECK(a.dtype() == b.dtype(), op, ": inputs of different dtypes: ", a.describe(), " and ", b.describe(),
            " (cast one explicitly)");
}

namespace {
template <class T>
using Math = typename compute_type<T>::type;

template <class T>
T from_math(Math<T> v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16(v);
  else return v;
}
}  // namespace

Tensor unary_forward(const char* op, UnaryOp kind, const Tensor& x, double scalar) {
  check_floating(op, x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const T* in = static_cast<const T*>(x.raw_data());
      T* out = y.data<T>();
      int64_t i = 0;
      for_each_offset<1>(x.shape(), {x.strides()}, [&](const auto& o) {
        out[i++] = from_math<T>(apply_unary<Math<T>>(kind, static_cast<Math<T>>(in[o[0]]), static_cast<Math<T>>(scalar)));
      });
    });
    return y;
  }
  DeviceGuard guard(x.device());
  cuda::UnaryArgs args;
  args.op = kind;
  args.scalar = scalar;
  args.count = x.numel();
  args.dtype = x.dtype();
  args.x = x.raw_data();
  args.x_layout = layout_of(x);
  args.out = y.raw_data();
  MGL_ON_CUDA(cuda::unary(args, compute_stream(x.device())));
  return y;
}

Tensor binary_forward(const char* op, BinaryOp kind, const Tensor& a, const Tensor& b) {
  check_compatible(op, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  const std::vector<int64_t> a_strides = broadcast_strides(a.shape(), a.strides(), shape);
  const std::vector<int64_t> b_strides = broadcast_strides(b.shape(), b.strides(), shape);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (a.is_cpu()) {
    dispatch_floating(a.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      T* po = out.data<T>();
      int64_t i = 0;
      for_each_offset<2>(shape, {a_strides, b_strides}, [&](const auto& o) {
        po[i++] = from_math<T>(apply_binary<Math<T>>(kind, static_cast<Math<T>>(pa[o[0]]), static_cast<Math<T>>(pb[o[1]])));
      });
    });
    return out;
  }
  DeviceGuard guard(a.device());
  cuda::BinaryArgs args;
  args.op = kind;
  args.count = out.numel();
  args.dtype = a.dtype();
  args.a = a.raw_data();
  args.a_layout = layout_of(shape, a_strides);
  args.b = b.raw_data();
  args.b_layout = layout_of(shape, b_strides);
  args.out = out.raw_data();
  MGL_ON_CUDA(cuda::binary(args, compute_stream(a.device())));
  return out;
}

Tensor unary_op(const char* op, UnaryOp kind, const Tensor& x, Save save, UnaryBackward backward) {
  Tensor y = unary_forward(op, kind, x);
  autograd::record(op, {x}, {y}, [saved = (save == Save::input ? x : y).detach(), backward](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{backward(g[0], saved)};
  });
  return y;
}

}  // namespace mgl::detail

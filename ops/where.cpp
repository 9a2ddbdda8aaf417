// where: y = condition ? a : b elementwise, the three operands broadcast together (the condition of
// any dtype, non-zero meaning true; a and b of one floating dtype).
// Backward: da = sum_to_shape(condition ? dy : 0, a.shape), db = sum_to_shape(condition ? 0 : dy, b.shape);
// the condition gets no gradient.
#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/where.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace {

template <class C>
bool nonzero(C c) {
  if constexpr (std::is_same_v<C, bf16>) return static_cast<float>(c) != 0.0f;
  else return c != C(0);
}

Tensor where_forward(const Tensor& condition, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(broadcast_shapes(condition.shape(), a.shape(), "where"), b.shape(), "where");
  const std::vector<int64_t> c_strides = broadcast_strides(condition.shape(), condition.strides(), shape);
  const std::vector<int64_t> a_strides = broadcast_strides(a.shape(), a.strides(), shape);
  const std::vector<int64_t> b_strides = broadcast_strides(b.shape(), b.strides(), shape);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (a.is_cpu()) {
    dispatch_all(condition.dtype(), [&](auto condition_tag) {
      dispatch_floating(a.dtype(), "where", [&](auto tag) {
        using C = decltype(condition_tag);
        using T = decltype(tag);
        const C* pc = static_cast<const C*>(condition.raw_data());
        const T* pa = static_cast<const T*>(a.raw_data());
        const T* pb = static_cast<const T*>(b.raw_data());
        T* po = out.data<T>();
        int64_t i = 0;
        for_each_offset<3>(shape, {c_strides, a_strides, b_strides},
                           [&](const auto& o) { po[i++] = nonzero(pc[o[0]]) ? pa[o[1]] : pb[o[2]]; });
      });
    });
    return out;
  }
  DeviceGuard guard(a.device());
  cuda::WhereArgs args;
  args.count = out.numel();
  args.dtype = a.dtype();
  args.condition = condition.raw_data();
  args.condition_dtype = condition.dtype();
  args.condition_layout = layout_of(shape, c_strides);
  args.a = a.raw_data();
  args.a_layout = layout_of(shape, a_strides);
  args.b = b.raw_data();
  args.b_layout = layout_of(shape, b_strides);
  args.out = out.raw_data();
  MGL_ON_CUDA(cuda::where(args, compute_stream(a.device())));
  return out;
}

}  // namespace

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  detail::check_compatible("where", a, b);
  MGL_CHECK(condition.defined(), "where: condition is an undefined tensor");
  MGL_CHECK(condition.device() == a.device(), "where: condition ", condition.describe(), " and values ",
            a.describe(), " are on different devices");
  Tensor out = where_forward(condition, a, b);
  autograd::record("where", {a, b}, {out},
                   [condition = condition.detach(), a_shape = a.shape(), b_shape = b.shape(),
                    need_a = a.requires_grad(), need_b = b.requires_grad()](const std::vector<Tensor>& g) {
                     const Tensor zero = Tensor::zeros({}, g[0].dtype(), g[0].device());
                     return std::vector<Tensor>{
                         need_a ? sum_to_shape(where_forward(condition, g[0], zero), a_shape) : Tensor(),
                         need_b ? sum_to_shape(where_forward(condition, zero, g[0]), b_shape) : Tensor()};
                   });
  return out;
}

}  // namespace mgl

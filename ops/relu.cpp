// relu: y = max(x, 0).
// Backward: dx = dy * [x > 0].
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor relu(const Tensor& x) {
  return detail::unary_op("relu", UnaryOp::relu, x, detail::Save::input,
                          [](const Tensor& dy, const Tensor& x) { return mul(dy, detail::unary_forward("relu_backward", UnaryOp::step, x)); });
}

}  // namespace mgl

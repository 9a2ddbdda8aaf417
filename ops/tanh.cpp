// tanh: y = tanh(x).
// Backward: dx = dy * (1 - y^2).
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor tanh(const Tensor& x) {
  return detail::unary_op("tanh", UnaryOp::tanh, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor& y) { return mul(dy, add(neg(mul(y, y)), 1.0)); });
}

}  // namespace mgl

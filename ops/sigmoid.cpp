// sigmoid: y = 1 / (1 + e^-x).
// Backward: dx = dy * y * (1 - y).
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor sigmoid(const Tensor& x) {
  return detail::unary_op("sigmoid", UnaryOp::sigmoid, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor& y) { return mul(dy, mul(y, add(neg(y), 1.0))); });
}

}  // namespace mgl

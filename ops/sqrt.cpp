// sqrt: y = sqrt(x).
// Backward: dx = dy / (2 y).
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor sqrt(const Tensor& x) {
  return detail::unary_op("sqrt", UnaryOp::sqrt, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor& y) { return mul(div(dy, y), 0.5); });
}

}  // namespace mgl

// neg: y = -x.
// Backward: dx = -dy.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor neg(const Tensor& x) {
  return detail::unary_op("neg", UnaryOp::neg, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor&) { return neg(dy); });
}

}  // namespace mgl

// exp: y = e^x.
// Backward: dx = dy * y.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor exp(const Tensor& x) {
  return detail::unary_op("exp", UnaryOp::exp, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor& y) { return mul(dy, y); });
}

}  // namespace mgl

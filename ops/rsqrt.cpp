// rsqrt: y = 1 / sqrt(x).
// Backward: dx = -dy * y^3 / 2.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor rsqrt(const Tensor& x) {
  return detail::unary_op("rsqrt", UnaryOp::rsqrt, x, detail::Save::output,
                          [](const Tensor& dy, const Tensor& y) { return mul(mul(dy, pow(y, 3.0)), -0.5); });
}

}  // namespace mgl

// silu: y = x * s, s = sigmoid(x).
// Backward: dx = dy * s * (1 + x * (1 - s)).
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor silu(const Tensor& x) {
  return detail::unary_op("silu", UnaryOp::silu, x, detail::Save::input,
                          [](const Tensor& dy, const Tensor& x) {
                            const Tensor s = sigmoid(x);
                            return mul(dy, mul(s, add(mul(x, add(neg(s), 1.0)), 1.0)));
                          });
}

}  // namespace mgl

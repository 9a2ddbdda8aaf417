// gelu: y = x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)).
// Backward: dx = dy * (Phi(x) + x * phi(x)), phi the normal density.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor gelu(const Tensor& x) {
  return detail::unary_op("gelu", UnaryOp::gelu, x, detail::Save::input,
                          [](const Tensor& dy, const Tensor& x) { return mul(dy, detail::unary_forward("gelu_backward", UnaryOp::gelu_derivative, x)); });
}

}  // namespace mgl

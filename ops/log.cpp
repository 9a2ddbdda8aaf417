// log: y = ln x.
// Backward: dx = dy / x.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor log(const Tensor& x) {
  return detail::unary_op("log", UnaryOp::log, x, detail::Save::input,
                          [](const Tensor& dy, const Tensor& x) { return div(dy, x); });
}

}  // namespace mgl

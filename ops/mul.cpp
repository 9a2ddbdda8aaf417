// mul: out = a * b (broadcasting).   Backward: da = sum_to_shape(dout * b), db = sum_to_shape(dout * a).
// mul (scalar): out = a * s.         Backward: da = dout * s.
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward("mul", BinaryOp::mul, a, b);
  autograd::record("mul", {a, b}, {out}, [a = a.detach(), b = b.detach()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to_shape(mul(g[0], b), a.shape()), sum_to_shape(mul(g[0], a), b.shape())};
  });
  return out;
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = detail::unary_forward("mul", UnaryOp::mul_scalar, a, s);
  autograd::record("mul_scalar", {a}, {out}, [s](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], s)}; });
  return out;
}

}  // namespace mgl

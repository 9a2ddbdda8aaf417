// add: out = a + b (broadcasting).   Backward: da = sum_to_shape(dout), db = sum_to_shape(dout).
// add (scalar): out = a + s.         Backward: da = dout.
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward("add", BinaryOp::add, a, b);
  autograd::record("add", {a, b}, {out}, [a_shape = a.shape(), b_shape = b.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to_shape(g[0], a_shape), sum_to_shape(g[0], b_shape)};
  });
  return out;
}

Tensor add(const Tensor& a, double s) {
  Tensor out = detail::unary_forward("add", UnaryOp::add_scalar, a, s);
  autograd::record("add_scalar", {a}, {out}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

}  // namespace mgl

// sub: out = a - b (broadcasting).   Backward: da = sum_to_shape(dout), db = -sum_to_shape(dout).
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward("sub", BinaryOp::sub, a, b);
  autograd::record("sub", {a, b}, {out}, [a_shape = a.shape(), b_shape = b.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to_shape(g[0], a_shape), neg(sum_to_shape(g[0], b_shape))};
  });
  return out;
}

}  // namespace mgl

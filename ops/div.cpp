// div: out = a / b (broadcasting).
// Backward: da = sum_to_shape(dout / b), db = sum_to_shape(-dout * out / b)   (d(a/b)/db = -a/b^2).
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward("div", BinaryOp::div, a, b);
  autograd::record("div", {a, b}, {out},
                   [a_shape = a.shape(), b = b.detach(), out = out.detach()](const std::vector<Tensor>& g) {
                     const Tensor da = div(g[0], b);
                     return std::vector<Tensor>{sum_to_shape(da, a_shape), sum_to_shape(neg(mul(da, out)), b.shape())};
                   });
  return out;
}

}  // namespace mgl

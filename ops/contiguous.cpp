// contiguous: the same values in a row-major buffer (x itself when already contiguous).
// Backward: dx = dy.
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  copy_(y, x);
  autograd::record("contiguous", {x}, {y}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return y;
}

}  // namespace mgl

// cast: x converted to another dtype (bf16 rounds to nearest even).
// Backward: dx = cast(dy, x.dtype) for floating x; integer inputs get no gradient.
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor y = Tensor::empty(x.shape(), dtype, x.device());
  copy_(y, x);
  if (is_floating(dtype) && is_floating(x.dtype()))
    autograd::record("cast", {x}, {y}, [source = x.dtype()](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{cast(g[0], source)};
    });
  return y;
}

}  // namespace mgl

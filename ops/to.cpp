// to(device): a copy of x on another device.   Backward: dx = to(dy, x.device).
#include "autograd/node.h"
#include "core/cuda_context.h"
#include "ops/ops.h"

namespace mgl {

Tensor to(const Tensor& x, const Device& device) {
  if (x.device() == device) return x;
  require_cuda(device, "to");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), device);
  copy_(y, x);
  autograd::record("to", {x}, {y}, [source = x.device()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{to(g[0], source)};
  });
  return y;
}

}  // namespace mgl

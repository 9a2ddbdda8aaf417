// max over dims (like torch.amax): y = max_{reduced dims} x (NaN if any of them is NaN; at least
// one element per output).
// Backward: the subgradient that shares dy equally among the elements attaining the maximum,
//   dx = dy * [x == y] / #{x == y}   (y, dy and the tie count broadcast back over the reduced dims).
// A NaN maximum matches no element, so its gradient is NaN (0/0), as in PyTorch.
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/detail/reduce.h"
#include "ops/ops.h"

namespace mgl {

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const detail::Reduction plan = detail::plan_reduction("max", x, dims, keepdim);
  Tensor y = detail::reduce_forward("max", cuda::ReduceOp::max, x, plan);
  autograd::record("max", {x}, {y}, [x = x.detach(), y = y.detach(), plan](const std::vector<Tensor>& g) {
    const Tensor is_max = detail::binary_forward("max", BinaryOp::eq, x, detail::expand_reduced(y, plan, x.shape()));
    const Tensor ties = detail::reduce_forward("max", cuda::ReduceOp::sum, is_max, plan);
    return std::vector<Tensor>{mul(is_max, detail::expand_reduced(div(g[0], ties), plan, x.shape()))};
  });
  return y;
}

}  // namespace mgl

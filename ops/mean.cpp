// mean over dims: y = (1/n) sum_{reduced dims} x, n = the number of elements folded into each y
// (NaN when n = 0).   Backward: dx = dy / n, broadcast back over the reduced dims.
#include "autograd/node.h"
#include "ops/detail/reduce.h"
#include "ops/ops.h"

namespace mgl {

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const detail::Reduction plan = detail::plan_reduction("mean", x, dims, keepdim);
  Tensor y = detail::reduce_forward("mean", cuda::ReduceOp::mean, x, plan);
  autograd::record("mean", {x}, {y}, [plan, shape = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::expand_reduced(mul(g[0], 1.0 / static_cast<double>(plan.count)), plan, shape)};
  });
  return y;
}

}  // namespace mgl

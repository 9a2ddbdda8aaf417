// sum over dims: y = sum_{reduced dims} x.   Backward: dx = dy broadcast back over the reduced dims.
// sum_to_shape(g, s): sums g over the dims that broadcasting expanded from shape s (the backward of
// every broadcasting op); its own backward is an expand.
#include "autograd/node.h"
#include "ops/detail/reduce.h"
#include "ops/ops.h"

namespace mgl {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const detail::Reduction plan = detail::plan_reduction("sum", x, dims, keepdim);
  Tensor y = detail::reduce_forward("sum", cuda::ReduceOp::sum, x, plan);
  autograd::record("sum", {x}, {y}, [plan, shape = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{detail::expand_reduced(g[0], plan, shape)};
  });
  return y;
}

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  MGL_CHECK(lead >= 0, "sum_to_shape: cannot reduce ", grad.describe(), " to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead) dims.push_back(d);
    else if (shape[d - lead] == 1 && grad.size(d) != 1) dims.push_back(d);
    else MGL_CHECK(shape[d - lead] == grad.size(d), "sum_to_shape: cannot reduce ", grad.describe(), " to ", shape_str(shape));
  }
  return reshape(sum(grad, dims, true), shape);
}

}  // namespace mgl

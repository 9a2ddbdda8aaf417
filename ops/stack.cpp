// stack: y[..., k, ...] = x_k, inputs of one shape joined along a new dim (unsqueeze each, then
// concat). Backward: dx_k = dy[..., k, ...], through the unsqueeze and concat nodes it is built from.
#include "ops/ops.h"

namespace mgl {

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MGL_CHECK(!xs.empty(), "stack: empty list of tensors");
  for (size_t k = 0; k < xs.size(); ++k) {
    MGL_CHECK(xs[k].defined(), "stack: input ", k, " is an undefined tensor");
    MGL_CHECK(xs[k].shape() == xs[0].shape(), "stack: input ", k, " has shape ", shape_str(xs[k].shape()),
              " but input 0 has ", shape_str(xs[0].shape()), " (stack needs equal shapes)");
  }
  const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (const Tensor& x : xs) parts.push_back(unsqueeze(x, d));
  return concat(parts, d);
}

}  // namespace mgl

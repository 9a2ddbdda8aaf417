// permute: y[i_order[0], ..., i_order[n-1]] = x[i_0, ..., i_{n-1}], a view with permuted strides.
// Backward: dx = permute(dy, inverse order).   transpose swaps two dims.
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  MGL_CHECK(static_cast<int64_t>(order.size()) == x.dim(), "permute: order of ", order.size(), " dims for ", x.describe());
  std::vector<int64_t> inverse(order.size(), -1);
  Shape shape, strides;
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t d = normalize_dim(order[i], x.dim(), "permute");
    MGL_CHECK(inverse[d] < 0, "permute: dim ", order[i], " repeated in the order for ", x.describe());
    inverse[d] = static_cast<int64_t>(i);
    shape.push_back(x.size(d));
    strides.push_back(x.stride(d));
  }
  Tensor y = x.as_strided(shape, strides, x.offset());
  autograd::record("permute", {x}, {y}, [inverse](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{permute(g[0], inverse)};
  });
  return y;
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> order(x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) order[d] = d;
  std::swap(order[normalize_dim(dim0, x.dim(), "transpose")], order[normalize_dim(dim1, x.dim(), "transpose")]);
  return permute(x, order);
}

}  // namespace mgl

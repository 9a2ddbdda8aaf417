// slice: y = x[..., start:end:step, ...] along one dim, a view.
// Backward: dx = zeros like x with dy written into the same slice.
#include <algorithm>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int64_t d = normalize_dim(dim, x.dim(), "slice");
  const int64_t size = x.size(d);
  MGL_CHECK(step > 0, "slice: step must be positive, got ", step);
  if (start < 0) start += size;
  if (end < 0) end += size;
  start = std::clamp<int64_t>(start, 0, size);
  end = std::clamp<int64_t>(end, start, size);
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  Tensor y = x.as_strided(shape, strides, x.offset() + start * x.stride(d));
  autograd::record("slice", {x}, {y}, [in_shape = x.shape(), d, start, end, step](const std::vector<Tensor>& g) {
    Tensor dx = Tensor::zeros(in_shape, g[0].dtype(), g[0].device());
    copy_(slice(dx, d, start, end, step), g[0]);
    return std::vector<Tensor>{dx};
  });
  return y;
}

}  // namespace mgl

// reshape: the same elements in row-major order under a new shape (a view when x is contiguous,
// a copy otherwise).   Backward: dx = reshape(dy, x.shape).
// unsqueeze / squeeze are reshapes that add or drop a size-1 dim.
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

namespace {
Shape infer_shape(const Tensor& x, Shape shape) {
  int64_t known = 1, infer = -1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == -1) {
      MGL_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(d);
    } else {
      MGL_CHECK(shape[d] >= 0, "reshape: invalid size in ", shape_str(shape));
      known *= shape[d];
    }
  }
  if (infer >= 0) {
    MGL_CHECK(known > 0 && x.numel() % known == 0, "reshape: cannot infer -1 in ", shape_str(shape), " for ", x.describe());
    shape[infer] = x.numel() / known;
  }
  MGL_CHECK(numel(shape) == x.numel(), "reshape: ", x.describe(), " has ", x.numel(), " elements, shape ",
            shape_str(shape), " needs ", numel(shape));
  return shape;
}
}  // namespace

Tensor reshape(const Tensor& x, const Shape& requested) {
  const Shape shape = infer_shape(x, requested);
  if (shape == x.shape()) return x;
  const Tensor source = contiguous(x);  // records its own node if it copies
  Tensor y = source.as_strided(shape, contiguous_strides(shape), source.offset());
  autograd::record("reshape", {source}, {y}, [in_shape = source.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{reshape(g[0], in_shape)};
  });
  return y;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Shape shape = x.shape();
  const int64_t d = normalize_dim(dim, x.dim() + 1, "unsqueeze");
  shape.insert(shape.begin() + d, 1);
  return reshape(x, shape);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  const int64_t d = normalize_dim(dim, x.dim(), "squeeze");
  MGL_CHECK(x.size(d) == 1, "squeeze: dim ", dim, " of ", x.describe(), " has size ", x.size(d), ", not 1");
  Shape shape = x.shape();
  shape.erase(shape.begin() + d);
  return reshape(x, shape);
}

}  // namespace mgl

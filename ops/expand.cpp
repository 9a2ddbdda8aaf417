// expand: a broadcast view of x at `shape` (size-1 dims repeat with stride 0, new leading dims
// are added).   Backward: dx = sum_to_shape(dy, x.shape).
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor expand(const Tensor& x, const Shape& shape) {
  if (shape == x.shape()) return x;
  MGL_CHECK(broadcast_shapes(x.shape(), shape, "expand") == shape, "expand: ", x.describe(), " cannot expand to ",
            shape_str(shape));
  Tensor y = x.as_strided(shape, broadcast_strides(x.shape(), x.strides(), shape), x.offset());
  autograd::record("expand", {x}, {y}, [in_shape = x.shape()](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to_shape(g[0], in_shape)};
  });
  return y;
}

}  // namespace mgl

// masked_fill: y = mask ? value : x elementwise, x and the mask (any dtype, non-zero meaning true)
// broadcast together. It is where(mask, value, x) with the value as a 0-dim tensor of x's dtype.
// Backward: dx = sum_to_shape(mask ? 0 : dy, x.shape) (the where node's gradient of its b operand).
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  detail::check_floating("masked_fill", x);
  MGL_CHECK(mask.defined(), "masked_fill: mask is an undefined tensor");
  MGL_CHECK(mask.device() == x.device(), "masked_fill: mask ", mask.describe(), " and input ", x.describe(),
            " are on different devices");
  broadcast_shapes(x.shape(), mask.shape(), "masked_fill");  // throws, naming this op, if they do not broadcast
  return where(mask, Tensor::full({}, value, x.dtype(), x.device()), x);
}

}  // namespace mgl

// rms_norm over the last dim (n elements) of x:
//   rstd = (mean(x^2) + eps)^(-1/2),  xhat = x * rstd,  y = xhat * w.
// Backward, with g = dy * w (w = 1 when absent):
//   dx = rstd * (g - xhat * mean(g * xhat)),  dw = sum over rows of dy * xhat.
// It is layer_norm without centring (the mean taken as 0) and without a bias, computed by the same
// fused code (ops/detail/layer_norm.h). MEGALODON's "plus one" scale (w + 1, w initialised to 0) belongs to
// the module, which passes w + 1 here.
#include "ops/detail/layer_norm.h"
#include "ops/ops.h"

namespace mgl {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return detail::normalize_last_dim("rms_norm", x, weight, Tensor(), eps, false);
}

}  // namespace mgl

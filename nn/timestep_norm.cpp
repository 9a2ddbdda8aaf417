#include "nn/timestep_norm.h"

#include "nn/compute_copy.h"
#include "ops/ops.h"

namespace mgl::nn {

TimestepNorm::TimestepNorm(int64_t dim, int64_t groups, double eps, const InitOptions& options)
    : eps_(eps) {
  MGL_CHECK(groups > 0 && dim % groups == 0, "TimestepNorm: dim ", dim, " is not divisible into ", groups, " groups");
  channels_per_group_ = dim / groups;
  weight_ = register_parameter("weight", init::zeros({dim}, options), {0});
  bias_ = register_parameter("bias", init::zeros({dim}, options), {0});
}

Tensor TimestepNorm::forward(const Tensor& x, const TimestepNormState* incoming, TimestepNormState* outgoing) const {
  TimestepNormOutput out =
      timestep_norm(x, compute_copy(weight_, x.dtype()), compute_copy(bias_, x.dtype()), groups(), incoming, eps_);
  if (outgoing) *outgoing = std::move(out.state);
  return out.y;
}

}  // namespace mgl::nn

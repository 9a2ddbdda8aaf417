#include "nn/linear.h"

#include <cmath>

#include "ops/ops.h"

namespace mgl::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, const InitOptions& options, LinearSplit split) {
  MGL_CHECK(in_features > 0 && out_features > 0, "Linear: feature counts must be positive, got in ", in_features,
            ", out ", out_features);
  MGL_CHECK(!(bias && split == LinearSplit::rows), "Linear: a layer split by rows has no bias (its outputs are partial sums)");
  const double std = options.std.value_or(1.0 / std::sqrt(3.0 * static_cast<double>(in_features)));
  const Sharding weight_sharding{split == LinearSplit::columns ? 0 : split == LinearSplit::rows ? 1 : Sharding::kReplicated};
  weight_ = register_parameter("weight", init::normal({out_features, in_features}, std, options), weight_sharding);
  if (bias) bias_ = register_parameter("bias", init::zeros({out_features}, options), {weight_sharding.dim});
}

// Parameters are cast to the activations' dtype at use (a no-op when they match): with f32 master
// weights and bf16 activations this is mixed precision, and the cast's backward returns f32 gradients.
Tensor Linear::forward(const Tensor& x) const {
  return linear(x, cast(weight_, x.dtype()), bias_.defined() ? cast(bias_, x.dtype()) : bias_);
}

}  // namespace mgl::nn

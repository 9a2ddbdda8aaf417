#include "nn/linear.h"

#include <cmath>

#include "nn/compute_copy.h"
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

// Parameters in the activations' dtype: themselves when the dtypes match, else their cached compute
// copies (nn/compute_copy.h). With f32 master weights and bf16 activations this is mixed precision, and
// the gradients reach the f32 parameters.
Tensor Linear::forward(const Tensor& x) const {
  return linear(x, compute_copy(weight_, x.dtype()), bias_.defined() ? compute_copy(bias_, x.dtype()) : bias_);
}

}  // namespace mgl::nn

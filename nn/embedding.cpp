#include "nn/embedding.h"

#include <cmath>

#include "ops/ops.h"

namespace mgl::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, const InitOptions& options) {
  MGL_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
  const double std = options.std.value_or(1.0 / std::sqrt(static_cast<double>(dim)));
  // Split along the features under tensor parallelism: each rank looks up its D/TP channels of every
  // token, the residual stream's own split (nn/tensor_parallel.h), with no communication.
  weight_ = register_parameter("weight", init::truncated_normal({num_embeddings, dim}, std, 3.0 * std, options), {1});
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

}  // namespace mgl::nn

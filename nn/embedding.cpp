#include "nn/embedding.h"

#include <cmath>

#include "ops/ops.h"

namespace mgl::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, const InitOptions& options) {
  MGL_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
  const double std = options.std.value_or(1.0 / std::sqrt(static_cast<double>(dim)));
  weight_ = register_parameter("weight", init::truncated_normal({num_embeddings, dim}, std, 3.0 * std, options));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

}  // namespace mgl::nn

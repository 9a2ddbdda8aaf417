#include "nn/mlp.h"

#include "ops/ops.h"

namespace mgl::nn {

MLP::MLP(int64_t in_features, int64_t hidden_features, int64_t out_features, const InitOptions& options) {
  fc1_ = register_module("fc1", std::make_shared<Linear>(in_features, hidden_features, true, options));
  fc2_ = register_module("fc2", std::make_shared<Linear>(hidden_features, out_features, true, options));
}

Tensor MLP::forward(const Tensor& x) const { return fc2_->forward(gelu(fc1_->forward(x))); }

}  // namespace mgl::nn

#include "nn/normalized_ffn.h"

#include <cmath>

#include "nn/compute_copy.h"
#include "ops/ops.h"

namespace mgl::nn {

NormalizedFeedForward::NormalizedFeedForward(const MegalodonConfig& config, int64_t layer_index,
                                             const InitOptions& options, const TensorParallel& tp)
    : config_(config), tp_(tp) {
  const int64_t D = config.model_dim, F = config.ffn_hidden_dim;
  if (config.norm_affine) {
    auto norm = std::make_shared<Module>();
    norm_weight_ = norm->register_parameter("weight", init::zeros({D}, options));
    norm_bias_ = norm->register_parameter("bias", init::zeros({D}, options));
    register_module("norm", norm);
  }
  fc1_ = register_module("fc1", std::make_shared<Linear>(D, F, false, options, LinearSplit::columns));
  fc2_ = register_module("fc2", std::make_shared<Linear>(F, D, false, options, LinearSplit::rows));
  if (config.swiglu) fc3_ = register_module("fc3", std::make_shared<Linear>(D, F, false, options, LinearSplit::columns));
  if (config.rescale_nffn)
    alpha_ = register_parameter("alpha", Tensor::full({D}, 0.1 * std::pow(0.5, double(layer_index)), options.dtype,
                                                      options.device), {0});
}

Tensor NormalizedFeedForward::forward(const Tensor& y_hat, const Tensor& residual) const {
  const bool training = is_training();
  const DType dtype = y_hat.dtype();
  // LayerNorm needs every channel: replicated on the gathered Ŷ; fc1 and fc3 share one all-reduce of
  // dn in backward (copy_in).
  Tensor n = layer_norm(tp_.gather_replicated(y_hat, 2),
                        norm_weight_.defined() ? cast(add(norm_weight_, 1.0), dtype) : Tensor(),
                        norm_bias_.defined() ? compute_copy(norm_bias_, dtype) : Tensor(), config_.norm_eps);
  n = tp_.copy_in(n);
  // SwiGLU's silu(n fc1ᵀ) ⊙ (n fc3ᵀ) is one fused pass forward and one backward (ops/silu_mul.cpp).
  const Tensor h = fc1_->forward(n);
  Tensor g = fc3_ ? silu_mul(h, fc3_->forward(n)) : silu(h);
  g = dropout(g, config_.hidden_dropout, training);
  Tensor f = dropout(tp_.reduce_scatter(fc2_->forward(g), 2), config_.dropout, training);
  if (alpha_.defined()) f = mul(f, compute_copy(alpha_, dtype));
  return add(f, residual);
}

}  // namespace mgl::nn

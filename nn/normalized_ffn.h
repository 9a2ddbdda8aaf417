#pragma once
// The normalized feed-forward sub-layer (docs/megalodon.md §2.6), with the two-hop residual:
//   n = LayerNorm(Ŷ);  g = silu(n fc1ᵀ) ⊙ (n fc3ᵀ)  (SwiGLU)  or  silu(n fc1ᵀ)  (SiLU)
//   returns Y = dropout(g fc2ᵀ) [⊙ alpha] + X      — X is the block's input, not Ŷ
// Under tensor parallelism (nn/tensor_parallel.h) Ŷ and X hold this rank's D/TP channels: Ŷ is gathered
// for the replicated LayerNorm, fc1 and fc3 are split by columns (F/TP hidden units), fc2 by rows, its
// partial sums reduce-scattered back to D/TP channels (where alpha, split the same way, applies).
#include "nn/linear.h"
#include "nn/megalodon_config.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

class NormalizedFeedForward : public Module {
 public:
  NormalizedFeedForward(const MegalodonConfig& config, int64_t layer_index, const InitOptions& options = {},
                        const TensorParallel& tp = {});
  Tensor forward(const Tensor& y_hat, const Tensor& residual) const;

  // The parts, for a decoder that runs the same math its own way (nn/cuda_decoder.h).
  const Tensor& norm_weight() const { return norm_weight_; }  // undefined unless norm_affine
  const Tensor& norm_bias() const { return norm_bias_; }
  const Linear& fc1() const { return *fc1_; }
  const Linear& fc2() const { return *fc2_; }
  const Linear* fc3() const { return fc3_.get(); }  // null unless SwiGLU
  const Tensor& alpha() const { return alpha_; }    // undefined unless rescale_nffn

 private:
  MegalodonConfig config_;
  TensorParallel tp_;
  Tensor norm_weight_, norm_bias_;  // LayerNorm: scale − 1 and shift (undefined unless norm_affine)
  std::shared_ptr<Linear> fc1_, fc2_, fc3_;  // fc3 only for SwiGLU
  Tensor alpha_;                             // per-channel output scale, only with rescale_nffn
};

}  // namespace mgl::nn

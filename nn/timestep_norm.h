#pragma once
// TimestepNorm as a module (docs/megalodon.md §2.2): parameters `weight` (scale − 1) and `bias`, both
// [D], zero at init; the math is the op in ops/timestep_norm.h. Its groups are contiguous channel
// ranges and it never mixes channels of different groups, so under tensor parallelism each rank runs
// it on its own D/TP channels, G/TP whole groups (its parameters are split along D).
#include "nn/init.h"
#include "nn/module.h"
#include "ops/timestep_norm.h"

namespace mgl::nn {

class TimestepNorm : public Module {
 public:
  TimestepNorm(int64_t dim, int64_t groups, double eps, const InitOptions& options = {});
  // x [B, L, D]. `incoming` null: start from the prior. `outgoing` non-null: receives the state
  // after the last step (differentiable: a later piece of the sequence may consume it).
  Tensor forward(const Tensor& x, const TimestepNormState* incoming = nullptr,
                 TimestepNormState* outgoing = nullptr) const;
  int64_t groups() const { return weight_.size(0) / channels_per_group_; }  // this rank's, when split
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
  int64_t channels_per_group_;
  double eps_;
};

}  // namespace mgl::nn

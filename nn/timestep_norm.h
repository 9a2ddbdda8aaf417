#pragma once
// TimestepNorm as a module (docs/megalodon.md §2.2): parameters `weight` (scale − 1) and `bias`, both
// [D], zero at init; the math is the op in ops/timestep_norm.h.
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
  int64_t groups() const { return groups_; }

 private:
  Tensor weight_, bias_;
  int64_t groups_;
  double eps_;
};

}  // namespace mgl::nn

#pragma once
// AdamW with decoupled weight decay, as torch.optim.AdamW (the formulas are in cuda/adamw.h).
// Parameters and their gradients are f32 (the master weights); both moments are f32 tensors on
// the parameter's device. On CUDA each parameter tensor is updated by one fused kernel launch.
#include <cstdint>

#include "nn/optimizer.h"

namespace mgl::nn {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // applied as p <- p (1 - lr wd), never through the gradient
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Parameter> parameters, const AdamWOptions& options = {});

  void step() override;

  // Mutable so that a learning-rate schedule can set options().lr before each step.
  AdamWOptions& options() { return options_; }
  // The state of parameter i: its step count t and moments m (exp_avg) and v (exp_avg_sq).
  int64_t step_count(size_t i) const { return state_.at(i).step; }
  const Tensor& exp_avg(size_t i) const { return state_.at(i).exp_avg; }
  const Tensor& exp_avg_sq(size_t i) const { return state_.at(i).exp_avg_sq; }

 private:
  struct State {
    int64_t step = 0;  // per parameter: one that got no gradient does not advance
    Tensor exp_avg, exp_avg_sq;
  };
  AdamWOptions options_;
  std::vector<State> state_;
};

}  // namespace mgl::nn

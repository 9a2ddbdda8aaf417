#pragma once
// What every optimizer shares: the parameters it updates, under their state_dict names (the keys
// of its state in checkpoints), and zero_grad(). An optimizer updates the parameter tensors in
// place, so the model's handles see the new values.
#include <vector>

#include "nn/module.h"

namespace mgl::nn {

class Optimizer {
 public:
  // Typically model.named_parameters(); each must be a floating leaf that requires grad.
  explicit Optimizer(std::vector<Parameter> parameters);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update from the current .grad of every parameter; parameters without a gradient (none
  // reached them since the last zero_grad) are left alone, their state untouched.
  virtual void step() = 0;
  // Drops every parameter's .grad; the next backward allocates a fresh one.
  void zero_grad() const;

  const std::vector<Parameter>& parameters() const { return parameters_; }

 protected:
  std::vector<Parameter> parameters_;
};

}  // namespace mgl::nn

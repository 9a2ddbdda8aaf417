#pragma once
// A two-layer perceptron: y = fc2(gelu(fc1(x))), the smallest model that trains end to end
// (the demo app and the training tests use it).
#include <memory>

#include "nn/linear.h"

namespace mgl::nn {

class MLP : public Module {
 public:
  MLP(int64_t in_features, int64_t hidden_features, int64_t out_features, const InitOptions& options = {});

  // x [..., in] -> [..., out]
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<Linear> fc1_, fc2_;
};

}  // namespace mgl::nn

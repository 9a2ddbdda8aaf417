#pragma once
// Stochastic gradient descent with momentum, as torch.optim.SGD (no dampening, no Nesterov):
//
//   d <- g + wd p              (L2 weight decay, coupled: it goes through the gradient)
//   b <- d at the first step, then b <- mu b + d        (momentum buffer; skipped when mu = 0)
//   p <- p - lr b
//
// Built from elementwise ops under no-grad, so it runs on any device and dtype.
#include "nn/optimizer.h"

namespace mgl::nn {

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double weight_decay = 0.0;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Parameter> parameters, const SGDOptions& options = {});

  void step() override;

  SGDOptions& options() { return options_; }
  // The momentum buffer of parameter i (undefined before its first step with momentum).
  const Tensor& momentum_buffer(size_t i) const { return buffers_.at(i); }

 private:
  SGDOptions options_;
  std::vector<Tensor> buffers_;
};

}  // namespace mgl::nn

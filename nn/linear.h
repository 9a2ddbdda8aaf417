#pragma once
// Linear: y = x W^T + b, with W [out, in] and b [out] (PyTorch's layout, so checkpoints map 1:1).
#include "nn/init.h"
#include "nn/module.h"

namespace mgl::nn {

class Linear : public Module {
 public:
  // W ~ normal(0, std) with std = options.std, by default 1/sqrt(3 in) (MEGALODON's "He" init:
  // kaiming_normal with a = sqrt 5); b = 0.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, const InitOptions& options = {});

  // x [..., in] -> [..., out]
  Tensor forward(const Tensor& x) const;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }

 private:
  Tensor weight_, bias_;
};

}  // namespace mgl::nn

#pragma once
// Linear: y = x W^T + b, with W [out, in] and b [out] (PyTorch's layout, so checkpoints map 1:1).
#include "nn/init.h"
#include "nn/module.h"

namespace mgl::nn {

// How a Linear is cut under tensor parallelism (nn/tensor_parallel.h, Megatron-LM's naming): by output
// features (columns of y: W and b split along 0; the input is whole on every rank) or by input features
// (rows of W: split along 1; each rank's output is a partial sum the caller reduces, so no bias).
enum class LinearSplit { none, columns, rows };

class Linear : public Module {
 public:
  // W ~ normal(0, std) with std = options.std, by default 1/sqrt(3 in) (MEGALODON's "He" init:
  // kaiming_normal with a = sqrt 5); b = 0. The sizes are the whole layer's; `split` records how its
  // parameters are sharded (nn/module.h Sharding), and shard_parameters cuts them.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, const InitOptions& options = {},
         LinearSplit split = LinearSplit::none);

  // x [..., in] -> [..., out]
  Tensor forward(const Tensor& x) const;

  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias
  int64_t in_features() const { return weight_.size(1); }   // this rank's, when split
  int64_t out_features() const { return weight_.size(0); }

 private:
  Tensor weight_, bias_;
};

}  // namespace mgl::nn

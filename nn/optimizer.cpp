#include "nn/optimizer.h"

namespace mgl::nn {

Optimizer::Optimizer(std::vector<Parameter> parameters) : parameters_(std::move(parameters)) {
  for (const Parameter& p : parameters_)
    MGL_CHECK(p.tensor.defined() && p.tensor.is_leaf() && p.tensor.requires_grad(), "optimizer: parameter '",
              p.name, "' (", p.tensor.describe(), ") is not a leaf that requires grad");
}

void Optimizer::zero_grad() const {
  for (const Parameter& p : parameters_) p.tensor.set_grad(Tensor());
}

}  // namespace mgl::nn

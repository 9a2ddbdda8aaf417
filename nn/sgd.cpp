#include "nn/sgd.h"

#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace mgl::nn {

SGD::SGD(std::vector<Parameter> parameters, const SGDOptions& options)
    : Optimizer(std::move(parameters)), options_(options), buffers_(parameters_.size()) {}

void SGD::step() {
  const SGDOptions& o = options_;
  MGL_CHECK(o.lr >= 0 && o.momentum >= 0 && o.weight_decay >= 0,
            "SGD: lr, momentum and weight decay must be >= 0, got ", o.lr, ", ", o.momentum, ", ", o.weight_decay);
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i].tensor;
    if (!p.grad().defined()) continue;
    Tensor direction = o.weight_decay != 0 ? add(p.grad(), mul(p, o.weight_decay)) : p.grad();
    if (o.momentum != 0) {
      Tensor& buffer = buffers_[i];
      if (buffer.defined()) {
        buffer = add(mul(buffer, o.momentum), direction);
      } else {
        buffer = Tensor::empty(direction.shape(), direction.dtype(), direction.device());
        copy_(buffer, direction);  // a copy: direction may be the .grad tensor itself
      }
      direction = buffer;
    }
    copy_(p, sub(p, mul(direction, o.lr)));
  }
}

}  // namespace mgl::nn

#include "nn/adamw.h"

#include <cmath>

#include "core/cuda_context.h"
#include "cuda/adamw.h"

namespace mgl::nn {

namespace {

void check_options(const AdamWOptions& o) {
  MGL_CHECK(o.lr >= 0, "AdamW: learning rate must be >= 0, got ", o.lr);
  MGL_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas must lie in [0, 1), got (",
            o.beta1, ", ", o.beta2, ")");
  MGL_CHECK(o.eps >= 0, "AdamW: eps must be >= 0, got ", o.eps);
  MGL_CHECK(o.weight_decay >= 0, "AdamW: weight decay must be >= 0, got ", o.weight_decay);
}

cuda::AdamWScalars scalars_for(const AdamWOptions& o, int64_t step) {
  const double t = static_cast<double>(step);
  return {static_cast<float>(1.0 - o.lr * o.weight_decay),
          static_cast<float>(o.beta1),
          static_cast<float>(o.beta2),
          static_cast<float>(1.0 - o.beta1),
          static_cast<float>(1.0 - o.beta2),
          static_cast<float>(o.lr / (1.0 - std::pow(o.beta1, t))),
          static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, t))),
          static_cast<float>(o.eps)};
}

}  // namespace

AdamW::AdamW(std::vector<Parameter> parameters, const AdamWOptions& options)
    : Optimizer(std::move(parameters)), options_(options) {
  check_options(options_);
  for (const Parameter& p : parameters_) {
    MGL_CHECK(p.tensor.dtype() == DType::f32 && p.tensor.is_contiguous(), "AdamW: parameter '", p.name, "' is ",
              p.tensor.describe(), "; AdamW updates contiguous f32 (master) weights");
    state_.push_back({0, Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device()),
                      Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device())});
  }
}

void AdamW::step() {
  check_options(options_);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i].tensor;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    MGL_CHECK(g.dtype() == DType::f32 && g.is_contiguous() && g.device() == p.device(), "AdamW: gradient of '",
              parameters_[i].name, "' is ", g.describe(), "; expected contiguous f32 on ", p.device().str());
    State& s = state_[i];
    const cuda::AdamWScalars scalars = scalars_for(options_, ++s.step);
    if (p.is_cpu()) {
      float* param = p.data<float>();
      const float* grad = g.data<float>();
      float* m = s.exp_avg.data<float>();
      float* v = s.exp_avg_sq.data<float>();
      for (int64_t k = 0; k < p.numel(); ++k) cuda::adamw_update(param[k], grad[k], m[k], v[k], scalars);
    } else {
      DeviceGuard guard(p.device());
      MGL_ON_CUDA(cuda::adamw_step(p.data<float>(), g.data<float>(), s.exp_avg.data<float>(),
                                   s.exp_avg_sq.data<float>(), p.numel(), scalars, compute_stream(p.device())));
    }
  }
}

}  // namespace mgl::nn

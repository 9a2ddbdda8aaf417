#include "nn/adamw.h"

#include <cmath>

#include "core/cuda_context.h"
#include "cuda/adamw.h"
#include "nn/compute_copy.h"
#include "nn/multi_tensor.h"

namespace mgl::nn {

void check_adamw_options(const AdamWOptions& o) {
  MGL_CHECK(o.lr >= 0, "AdamW: learning rate must be >= 0, got ", o.lr);
  MGL_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "AdamW: betas must lie in [0, 1), got (",
            o.beta1, ", ", o.beta2, ")");
  MGL_CHECK(o.eps >= 0, "AdamW: eps must be >= 0, got ", o.eps);
  MGL_CHECK(o.weight_decay >= 0, "AdamW: weight decay must be >= 0, got ", o.weight_decay);
}

AdamWScalars adamw_scalars(const AdamWOptions& o, double weight_decay, int64_t step) {
  const double t = static_cast<double>(step);
  return {static_cast<float>(1.0 - o.lr * weight_decay),
          static_cast<float>(o.beta1),
          static_cast<float>(o.beta2),
          static_cast<float>(1.0 - o.beta1),
          static_cast<float>(1.0 - o.beta2),
          static_cast<float>(o.lr / (1.0 - std::pow(o.beta1, t))),
          static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, t))),
          static_cast<float>(o.eps)};
}

void adamw_update_spans(const std::vector<AdamWSpan>& spans, const Device& device,
                        const Tensor& skip_unless_finite) {
  if (skip_unless_finite.defined())
    MGL_CHECK(skip_unless_finite.numel() == 1 && skip_unless_finite.dtype() == DType::f64 &&
                  skip_unless_finite.device() == device,
              "AdamW: the step's gate ", skip_unless_finite.describe(), " must be one f64 value on ", device.str());
  if (device.is_cpu()) {
    if (skip_unless_finite.defined() && !std::isfinite(skip_unless_finite.item())) return;
    for (const AdamWSpan& s : spans)
      for (int64_t k = 0; k < s.count; ++k) {
        adamw_update(s.param[k], s.grad[k], s.exp_avg[k], s.exp_avg_sq[k], s.scalars);
        if (s.compute_copy) s.compute_copy[k] = bf16(s.param[k]);
      }
    return;
  }
  std::vector<int64_t> counts;
  for (const AdamWSpan& s : spans) counts.push_back(s.count);
  const MultiTensorTable<AdamWSpan> table(spans, counts, device);
  cuda::AdamWMultiArgs args;
  args.spans = table.slots();
  args.chunks = table.chunks();
  args.chunk_count = table.chunk_count();
  args.skip_unless_finite = skip_unless_finite.defined() ? skip_unless_finite.data<double>() : nullptr;
  DeviceGuard guard(device);
  MGL_ON_CUDA(cuda::adamw_step(args, compute_stream(device)));
}

AdamW::AdamW(std::vector<Parameter> parameters, const AdamWOptions& options)
    : Optimizer(std::move(parameters)), options_(options) {
  check_adamw_options(options_);
  for (const Parameter& p : parameters_) {
    MGL_CHECK(p.tensor.dtype() == DType::f32 && p.tensor.is_contiguous(), "AdamW: parameter '", p.name, "' is ",
              p.tensor.describe(), "; AdamW updates contiguous f32 (master) weights");
    state_.push_back({0, Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device()),
                      Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device())});
  }
}

size_t AdamW::index_of(const std::string& name) const {
  for (size_t i = 0; i < parameters_.size(); ++i)
    if (parameters_[i].name == name) return i;
  MGL_FAIL("AdamW: no parameter named '", name, "'");
}

void AdamW::set_state(size_t i, int64_t step, const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  const Parameter& p = parameters_.at(i);
  MGL_CHECK(step >= 0, "AdamW: step count of '", p.name, "' must be >= 0, got ", step);
  for (const Tensor* moment : {&exp_avg, &exp_avg_sq})
    MGL_CHECK(moment->shape() == p.tensor.shape(), "AdamW: state of '", p.name, "' has shape ",
              shape_str(moment->shape()), ", the parameter ", shape_str(p.tensor.shape()));
  State& s = state_[i];
  s.step = step;
  copy_(s.exp_avg, exp_avg);
  copy_(s.exp_avg_sq, exp_avg_sq);
}

bool AdamW::decays(size_t i) const {
  return !options_.no_weight_decay || !options_.no_weight_decay(parameters_.at(i).name);
}

void AdamW::step() { step_unless_nonfinite(Tensor()); }

void AdamW::step_unless_nonfinite(const Tensor& norm) {
  check_adamw_options(options_);
  if (parameters_.empty()) return;
  const Device device = parameters_.front().tensor.device();
  std::vector<AdamWSpan> spans;
  std::vector<Tensor> updated;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i].tensor;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    MGL_CHECK(g.dtype() == DType::f32 && g.is_contiguous() && g.device() == p.device(), "AdamW: gradient of '",
              parameters_[i].name, "' is ", g.describe(), "; expected contiguous f32 on ", p.device().str());
    MGL_CHECK(p.device() == device, "AdamW: parameter '", parameters_[i].name, "' is on ", p.device().str(),
              ", the first on ", device.str(), "; one update covers parameters on one device");
    State& s = state_[i];
    const AdamWScalars scalars = adamw_scalars(options_, decays(i) ? options_.weight_decay : 0.0, ++s.step);
    // The bf16 compute copy, where the parameter has one, is written in the same pass: the next forward
    // casts nothing (nn/compute_copy.h).
    spans.push_back({p.data<float>(), g.data<float>(), s.exp_avg.data<float>(), s.exp_avg_sq.data<float>(), p.numel(),
                     scalars, compute_copy_to_refresh(p)});
    updated.push_back(p);
  }
  adamw_update_spans(spans, device, norm);
  finish_update(updated);
}

}  // namespace mgl::nn

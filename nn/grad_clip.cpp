#include "nn/grad_clip.h"

#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "core/cuda_context.h"
#include "cuda/grad_norm.h"
#include "ops/ops.h"

namespace mgl::nn {

namespace {

// sum_k g[k]^2 of every parameter that has a gradient (0 for those without), in list order.
std::vector<double> squared_norms(const std::vector<Parameter>& parameters) {
  std::optional<Device> device;
  for (const Parameter& p : parameters) {
    const Tensor g = p.tensor.grad();
    if (!g.defined()) continue;
    if (!device) device = g.device();
    MGL_CHECK(g.device() == *device, "grad_norm: gradient of '", p.name, "' is on ", g.device().str(),
              ", the others on ", device->str(), "; the global norm needs them on one device");
  }
  std::vector<double> sums(parameters.size(), 0.0);
  if (!device) return sums;
  if (device->is_cpu()) {
    for (size_t i = 0; i < parameters.size(); ++i) {
      const Tensor g = parameters[i].tensor.grad();
      if (!g.defined()) continue;
      for (const double v : g.to_vector<double>()) sums[i] += v * v;
    }
    return sums;
  }
  // One f64 slot per parameter on the device, filled by one sum_of_squares each, read back at once.
  const Tensor slots = Tensor::zeros({static_cast<int64_t>(parameters.size())}, DType::f64, *device);
  const Tensor partials = Tensor::empty({cuda::kSumOfSquaresBlocks}, DType::f64, *device);
  DeviceGuard guard(*device);
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor g = parameters[i].tensor.grad();
    if (!g.defined()) continue;
    MGL_CHECK(g.is_contiguous() && (g.dtype() == DType::f32 || g.dtype() == DType::bf16), "grad_norm: gradient of '",
              parameters[i].name, "' is ", g.describe(), "; expected contiguous f32 or bf16");
    MGL_ON_CUDA(cuda::sum_of_squares(g.raw_data(), g.dtype(), g.numel(), partials.data<double>(),
                                     slots.data<double>() + i, compute_stream(*device)));
  }
  return slots.to_vector<double>();
}

}  // namespace

GradNorm grad_norm(const std::vector<Parameter>& parameters) {
  const std::vector<double> sums = squared_norms(parameters);
  GradNorm result;
  double total = 0;
  for (size_t i = 0; i < sums.size(); ++i) {
    if (!std::isfinite(sums[i]) && result.finite()) result.first_nonfinite = parameters[i].name;
    total += sums[i];
  }
  result.norm = std::sqrt(total);
  return result;
}

void check_grads_finite(const std::vector<Parameter>& parameters) {
  const GradNorm n = grad_norm(parameters);
  MGL_CHECK(n.finite(), "gradient of parameter '", n.first_nonfinite, "' contains NaN or inf");
}

double clip_grad_norm_(const std::vector<Parameter>& parameters, double max_norm) {
  MGL_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be > 0, got ", max_norm);
  const GradNorm n = grad_norm(parameters);
  const double coefficient = max_norm / (n.norm + 1e-6);
  if (!n.finite() || coefficient >= 1) return n.norm;
  NoGradGuard no_grad;
  for (const Parameter& p : parameters) {
    const Tensor g = p.tensor.grad();
    if (g.defined()) copy_(g, mul(g, coefficient));
  }
  return n.norm;
}

}  // namespace mgl::nn

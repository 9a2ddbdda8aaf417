#include "nn/grad_clip.h"

#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "core/cuda_context.h"
#include "cuda/grad_norm.h"
#include "ops/ops.h"

namespace mgl::nn {

std::vector<double> squared_norms(const std::vector<Tensor>& tensors, const std::vector<std::string>& names) {
  auto name_of = [&](size_t i) { return i < names.size() ? "'" + names[i] + "'" : "tensor " + std::to_string(i); };
  std::optional<Device> device;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& g = tensors[i];
    if (!g.defined()) continue;
    if (!device) device = g.device();
    MGL_CHECK(g.device() == *device, "grad_norm: gradient of ", name_of(i), " is on ", g.device().str(),
              ", the others on ", device->str(), "; the global norm needs them on one device");
  }
  std::vector<double> sums(tensors.size(), 0.0);
  if (!device) return sums;
  if (device->is_cpu()) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!tensors[i].defined()) continue;
      for (const double v : tensors[i].to_vector<double>()) sums[i] += v * v;
    }
    return sums;
  }
  // One f64 slot per tensor on the device, filled by one sum_of_squares each, read back at once.
  const Tensor slots = Tensor::zeros({static_cast<int64_t>(tensors.size())}, DType::f64, *device);
  const Tensor partials = Tensor::empty({cuda::kSumOfSquaresBlocks}, DType::f64, *device);
  DeviceGuard guard(*device);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& g = tensors[i];
    if (!g.defined()) continue;
    MGL_CHECK(g.is_contiguous() && (g.dtype() == DType::f32 || g.dtype() == DType::bf16), "grad_norm: gradient of ",
              name_of(i), " is ", g.describe(), "; expected contiguous f32 or bf16");
    cuda::SumOfSquaresArgs args;
    args.count = g.numel();
    args.dtype = g.dtype();
    args.x = g.raw_data();
    args.partials = partials.data<double>();
    args.out = slots.data<double>() + i;
    MGL_ON_CUDA(cuda::sum_of_squares(args, compute_stream(*device)));
  }
  return slots.to_vector<double>();
}

void scale_(const std::vector<Tensor>& tensors, double coefficient) {
  NoGradGuard no_grad;
  for (const Tensor& g : tensors)
    if (g.defined()) copy_(g, mul(g, coefficient));
}

GradNorm grad_norm(const std::vector<Parameter>& parameters, const TensorParallel& tp) {
  std::vector<Tensor> grads;
  std::vector<std::string> names;
  for (const Parameter& p : parameters) {
    grads.push_back(p.tensor.grad());
    names.push_back(p.name);
  }
  const std::vector<double> sums = squared_norms(grads, names);
  GradNorm result;
  double total = 0;
  for (size_t i = 0; i < sums.size(); ++i) {
    if (!std::isfinite(sums[i]) && result.finite()) result.first_nonfinite = parameters[i].name;
    total += sums[i] * norm_weight(parameters[i].sharding, tp);
  }
  result.norm = std::sqrt(tp.sum(total));
  return result;
}

void check_grads_finite(const std::vector<Parameter>& parameters) {
  const GradNorm n = grad_norm(parameters);
  MGL_CHECK(n.finite(), "gradient of parameter '", n.first_nonfinite, "' contains NaN or inf");
}

double clip_grad_norm_(const std::vector<Parameter>& parameters, double max_norm, const TensorParallel& tp) {
  MGL_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be > 0, got ", max_norm);
  const GradNorm n = grad_norm(parameters, tp);
  const double coefficient = max_norm / (n.norm + 1e-6);
  if (!n.finite() || coefficient >= 1) return n.norm;
  std::vector<Tensor> grads;
  for (const Parameter& p : parameters) grads.push_back(p.tensor.grad());
  scale_(grads, coefficient);
  return n.norm;
}

}  // namespace mgl::nn

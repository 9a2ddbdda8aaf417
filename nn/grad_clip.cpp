#include "nn/grad_clip.h"

#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "base/grad_clip_math.h"
#include "core/cuda_context.h"
#include "cuda/grad_norm.h"
#include "nn/multi_tensor.h"
#include "ops/ops.h"

namespace mgl::nn {

namespace {

// The device every defined tensor is on (checked), or none when no tensor is defined.
std::optional<Device> common_device(const std::vector<Tensor>& tensors, const std::vector<std::string>& names) {
  auto name_of = [&](size_t i) { return i < names.size() ? "'" + names[i] + "'" : "tensor " + std::to_string(i); };
  std::optional<Device> device;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) continue;
    if (!device) device = t.device();
    MGL_CHECK(t.device() == *device, "grad_norm: gradient of ", name_of(i), " is on ", t.device().str(),
              ", the others on ", device->str(), "; the global norm needs them on one device");
    if (device->is_cuda())
      MGL_CHECK(t.is_contiguous() && (t.dtype() == DType::f32 || t.dtype() == DType::bf16), "grad_norm: gradient of ",
                name_of(i), " is ", t.describe(), "; expected contiguous f32 or bf16");
  }
  return device;
}

// The defined tensors of a list as the CUDA kernels take them, and their element counts.
struct GradList {
  std::vector<cuda::GradTensor> slots;
  std::vector<int64_t> counts;
};
GradList grad_list(const std::vector<Tensor>& tensors, const std::vector<double>& weights) {
  GradList list;
  int64_t first_chunk = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    cuda::GradTensor slot;
    if (t.defined()) {
      slot.data = t.raw_data();
      slot.count = t.numel();
      slot.dtype = t.dtype();
    }
    slot.first_chunk = first_chunk;
    slot.weight = weights.empty() ? 1.0 : weights[i];
    first_chunk += cuda::multi_tensor_chunks(slot.count);
    list.slots.push_back(slot);
    list.counts.push_back(slot.count);
  }
  return list;
}

}  // namespace

Tensor GlobalNorm::squares() const { return slice(values, 0, 0, values.numel() - 1); }
Tensor GlobalNorm::norm() const { return slice(values, 0, values.numel() - 1, values.numel()); }

GlobalNorm global_norm(const std::vector<Tensor>& tensors, const std::vector<double>& weights,
                       const std::vector<const dist::ProcessGroup*>& groups, const std::vector<std::string>& names) {
  MGL_CHECK(weights.empty() || weights.size() == tensors.size(), "global_norm: ", weights.size(), " weights for ",
            tensors.size(), " tensors");
  NoGradGuard no_grad;
  const Device device = common_device(tensors, names).value_or(Device::cpu());
  const int64_t n = static_cast<int64_t>(tensors.size());
  GlobalNorm result{Tensor::empty({n + 1}, DType::f64, device)};
  const Tensor total = result.norm();
  if (device.is_cpu()) {
    double* values = result.values.data<double>();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      values[i] = 0;
      if (tensors[i].defined())
        for (const double v : tensors[i].to_vector<double>()) values[i] += v * v;
      sum += values[i] * (weights.empty() ? 1.0 : weights[i]);
    }
    values[n] = sum;
  } else {
    const GradList list = grad_list(tensors, weights);
    const MultiTensorTable<cuda::GradTensor> table(list.slots, list.counts, device);
    const Tensor partials = Tensor::empty({table.chunk_count()}, DType::f64, device);
    cuda::SumOfSquaresArgs args;
    args.tensors = table.slots();
    args.chunks = table.chunks();
    args.tensor_count = n;
    args.chunk_count = table.chunk_count();
    args.partials = partials.data<double>();
    args.squares = result.values.data<double>();
    args.total = total.data<double>();
    DeviceGuard guard(device);
    MGL_ON_CUDA(cuda::sum_of_squares(args, compute_stream(device)));
  }
  // The weighted total over the ranks that hold other parts of the tensors, then its square root.
  for (const dist::ProcessGroup* group : groups)
    if (group && group->size() > 1) group->on(device).all_reduce(total, dist::ReduceOp::sum)->wait();
  copy_(total, sqrt(total));
  return result;
}

void clip_to_norm_(const std::vector<Tensor>& tensors, const Tensor& norm, double max_norm) {
  NoGradGuard no_grad;
  const std::optional<Device> device = common_device(tensors, {});
  if (!device) return;
  MGL_CHECK(norm.numel() == 1 && norm.dtype() == DType::f64 && norm.device() == *device, "clip_to_norm_: the norm ",
            norm.describe(), " must be one f64 value on the tensors' device ", device->str());
  if (device->is_cpu()) {
    const double coefficient = clip_coefficient(norm.item(), max_norm);
    if (!(coefficient < 1)) return;
    for (const Tensor& t : tensors)
      if (t.defined()) copy_(t, mul(t, coefficient));
    return;
  }
  const GradList list = grad_list(tensors, {});
  const MultiTensorTable<cuda::GradTensor> table(list.slots, list.counts, *device);
  cuda::ClipArgs args;
  args.tensors = table.slots();
  args.chunks = table.chunks();
  args.chunk_count = table.chunk_count();
  args.norm = norm.data<double>();
  args.max_norm = max_norm;
  DeviceGuard guard(*device);
  MGL_ON_CUDA(cuda::clip_to_norm(args, compute_stream(*device)));
}

GlobalNorm grad_norm_on_device(const std::vector<Parameter>& parameters, const TensorParallel& tp) {
  std::vector<Tensor> grads;
  std::vector<double> weights;
  std::vector<std::string> names;
  for (const Parameter& p : parameters) {
    grads.push_back(p.tensor.grad());
    weights.push_back(norm_weight(p.sharding, tp));
    names.push_back(p.name);
  }
  return global_norm(grads, weights, {tp.split() ? &tp.group() : nullptr}, names);
}

std::string first_nonfinite(const std::vector<double>& squares, const std::vector<std::string>& names) {
  for (size_t i = 0; i < squares.size() && i < names.size(); ++i)
    if (!std::isfinite(squares[i])) return names[i];
  return {};
}

GradNorm grad_norm(const std::vector<Parameter>& parameters, const TensorParallel& tp) {
  const std::vector<double> values = grad_norm_on_device(parameters, tp).values.to_vector<double>();
  std::vector<std::string> names;
  for (const Parameter& p : parameters) names.push_back(p.name);
  return {values.back(), first_nonfinite({values.begin(), values.end() - 1}, names)};
}

void check_grads_finite(const std::vector<Parameter>& parameters) {
  const GradNorm n = grad_norm(parameters);
  MGL_CHECK(n.finite(), "gradient of parameter '", n.first_nonfinite, "' contains NaN or inf");
}

GlobalNorm clip_grad_norm_on_device_(const std::vector<Parameter>& parameters, double max_norm,
                                     const TensorParallel& tp) {
  MGL_CHECK(max_norm > 0, "clip_grad_norm_: max_norm must be > 0, got ", max_norm);
  const GlobalNorm n = grad_norm_on_device(parameters, tp);
  std::vector<Tensor> grads;
  for (const Parameter& p : parameters) grads.push_back(p.tensor.grad());
  clip_to_norm_(grads, n.norm(), max_norm);
  return n;
}

double clip_grad_norm_(const std::vector<Parameter>& parameters, double max_norm, const TensorParallel& tp) {
  return clip_grad_norm_on_device_(parameters, max_norm, tp).norm().item();
}

}  // namespace mgl::nn

#pragma once
// Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_:
//   norm = sqrt( sum over parameters p, elements k of g_p[k]^2 ),   g <- g * min(1, max_norm / (norm + 1e-6)).
// The squares are summed on the gradients' device in f64, one sum per parameter, and the per-parameter
// sums come to the host in one read; a NaN or inf in a gradient makes that parameter's sum non-finite,
// which is how the finite check finds the first bad parameter without another pass.
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

struct GradNorm {
  double norm = 0;              // NaN or inf when some gradient is not finite
  std::string first_nonfinite;  // the first parameter (in list order) whose gradient has NaN/inf; empty if none
  bool finite() const { return first_nonfinite.empty(); }
};

// sum_k t[k]^2 of each tensor (0 for undefined ones), in f64, one read from the device for all of them.
// `names` (optional, parallel to `tensors`) name them in errors.
std::vector<double> squared_norms(const std::vector<Tensor>& tensors, const std::vector<std::string>& names = {});
// t <- t * coefficient for every defined tensor.
void scale_(const std::vector<Tensor>& tensors, double coefficient);

// The global norm of the gradients of `parameters`; parameters without a gradient are skipped. Every
// gradient must be on the same device (CPU: any floating dtype; CUDA: contiguous f32 or bf16).
// For a model split over a tensor group `tp` (collective over it): the norm of the whole model's
// gradient, every shard and every replicated parameter counted once (nn/tensor_parallel.h norm_weight);
// first_nonfinite names this rank's first bad gradient.
GradNorm grad_norm(const std::vector<Parameter>& parameters, const TensorParallel& tp = {});

// Throws mgl::Error naming the first parameter whose gradient has a NaN or inf.
void check_grads_finite(const std::vector<Parameter>& parameters);

// Scales every gradient in place by min(1, max_norm / (norm + 1e-6)) and returns the norm before
// clipping. A non-finite norm leaves the gradients untouched (the caller decides: skip the step or stop).
double clip_grad_norm_(const std::vector<Parameter>& parameters, double max_norm, const TensorParallel& tp = {});

}  // namespace mgl::nn

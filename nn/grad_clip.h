#pragma once
// Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_:
//   norm = sqrt( sum over parameters p, elements k of g_p[k]^2 ),   g <- g * min(1, max_norm / (norm + 1e-6)).
// The squares are summed on the gradients' device in f64, one sum per tensor (on CUDA one multi-tensor
// pass for the whole list, cuda/grad_norm.h), and the norm stays there: clipping reads it on the device,
// so a training step never waits for the host to learn it (apps/lib/training_step.h). A NaN or inf in a
// gradient makes that tensor's sum non-finite, which is how the finite check finds the first bad
// parameter without another pass.
#include <string>
#include <vector>

#include "dist/parallel_state.h"
#include "nn/module.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

// The squared sums of a list of tensors and their global norm, as one f64 vector on the tensors' device
// (read with one host read when wanted): values = [squares of tensor 0, ..., of tensor n-1, norm].
struct GlobalNorm {
  Tensor values;  // [n + 1] f64
  Tensor squares() const;  // [n]: sum_k t[k]^2 of each tensor (0 for an undefined one)
  Tensor norm() const;     // [1]: the norm
};

// norm = sqrt(sum_i weights[i] squares[i]), the weighted sum first summed over each of `groups` (in
// order; collective over each) when the tensors are split over ranks. weights default to 1. Every
// defined tensor must be on one device (CPU: any floating dtype; CUDA: contiguous f32 or bf16); `names`
// (optional, parallel to `tensors`) name them in errors. Undefined tensors count 0.
GlobalNorm global_norm(const std::vector<Tensor>& tensors, const std::vector<double>& weights = {},
                       const std::vector<const dist::ProcessGroup*>& groups = {},
                       const std::vector<std::string>& names = {});

// t <- t * min(1, max_norm / (norm + 1e-6)) for every defined tensor, with `norm` a [1] f64 tensor on
// their device (GlobalNorm::norm) read there, not on the host. A non-finite norm leaves them untouched
// (the caller decides: skip the step or stop).
void clip_to_norm_(const std::vector<Tensor>& tensors, const Tensor& norm, double max_norm);

// The global norm of the gradients of `parameters` on their device, in parameter order (a parameter
// without a gradient counts 0). For a model split over a tensor group `tp` (collective over it): the
// norm of the whole model's gradient, every shard and every replicated parameter counted once
// (nn/tensor_parallel.h norm_weight); the squares are this rank's.
GlobalNorm grad_norm_on_device(const std::vector<Parameter>& parameters, const TensorParallel& tp = {});

// The first name (in list order) whose square in `squares` (read from GlobalNorm::squares) is not
// finite; empty if none.
std::string first_nonfinite(const std::vector<double>& squares, const std::vector<std::string>& names);

// grad_norm_on_device read on the host.
struct GradNorm {
  double norm = 0;              // NaN or inf when some gradient is not finite
  std::string first_nonfinite;  // the first parameter (in list order) whose gradient has NaN/inf; empty if none
  bool finite() const { return first_nonfinite.empty(); }
};
GradNorm grad_norm(const std::vector<Parameter>& parameters, const TensorParallel& tp = {});

// Throws mgl::Error naming the first parameter whose gradient has a NaN or inf.
void check_grads_finite(const std::vector<Parameter>& parameters);

// Scales every gradient in place by min(1, max_norm / (norm + 1e-6)), the norm being grad_norm_on_device's,
// and returns that norm before clipping, left on the device. A non-finite norm leaves the gradients untouched.
GlobalNorm clip_grad_norm_on_device_(const std::vector<Parameter>& parameters, double max_norm,
                                     const TensorParallel& tp = {});
// clip_grad_norm_on_device_ with the norm read on the host.
double clip_grad_norm_(const std::vector<Parameter>& parameters, double max_norm, const TensorParallel& tp = {});

}  // namespace mgl::nn

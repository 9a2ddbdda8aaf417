#pragma once
// The cross-entropy of one row of logits x with target t, written once for the CPU reference
// (ops/cross_entropy.cpp, in f64) and the kernels (cuda/cross_entropy.cu, in f32; f64 for f64), which
// cross_entropy and linear_cross_entropy both run. Plain C++ marked MGL_HOST_DEVICE, so a CPU loop and a
// GPU thread run the same lines. With lse = log sum_c exp(x_c) (formed stably, max first, by the callers):
//   loss = lse - x_t,   dloss/dx_c = softmax(x)_c - [c == t] = exp(x_c - lse) - [c == t].
#include <math.h>

#include "base/dtype.h"

namespace mgl {

template <class M>
MGL_HOST_DEVICE inline M cross_entropy_row_loss(M lse, M target_logit) {
  return lse - target_logit;
}

// The gradient of g times the row's loss with respect to the logit x_c.
template <class M>
MGL_HOST_DEVICE inline M cross_entropy_logit_grad(M logit, M lse, bool is_target, M g) {
  return (::exp(logit - lse) - (is_target ? M(1) : M(0))) * g;
}

}  // namespace mgl

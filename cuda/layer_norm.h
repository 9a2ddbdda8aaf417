#pragma once
// Normalisation over the last dim of a contiguous [rows, cols] tensor: LayerNorm, and RMSNorm as
// its special case without centring (center = false: the mean is taken as 0).
//
//   mu = center ? mean(x) : 0,  rstd = (mean((x - mu)^2) + eps)^(-1/2),  xhat = (x - mu) rstd,
//   y = xhat * weight + bias
//
// weight and bias may be null (scale 1, shift 0). The statistics mean and rstd ([rows]) are written
// for the backward, in the statistics type: f32 for f32 and bf16 tensors, f64 for f64.
//
// Backward, with g = dy * weight:
//   dx = rstd * (g - [center] mean(g) - xhat * mean(g * xhat)),
//   dweight = sum over rows of dy * xhat,  dbias = sum over rows of dy.
// Any of dx, dweight, dbias may be null (not wanted). The weight and bias gradients are reduced
// without atomics: per-block partial sums in `workspace` (norm_backward_workspace(rows, cols)
// elements of the statistics type), then one pass that adds the partials of each column.
#include "base/layout.h"

namespace mgl::cuda {

void norm_forward(const void* x, const void* weight, const void* bias, void* y, void* mean, void* rstd, DType dtype,
                  int64_t rows, int64_t cols, double eps, bool center, Stream stream);

int64_t norm_backward_workspace(int64_t rows, int64_t cols);

void norm_backward(const void* x, const void* weight, const void* mean, const void* rstd, const void* dy, void* dx,
                   void* dweight, void* dbias, void* workspace, DType dtype, int64_t rows, int64_t cols, bool center,
                   Stream stream);

}  // namespace mgl::cuda

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

// x, y [rows, cols] of `dtype`; weight, bias [cols] of `dtype` or null; mean, rstd [rows] statistics.
struct NormForwardArgs {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;
  double eps = 1e-5;
  bool center = true;  // LayerNorm; false: RMSNorm
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  void* y = nullptr;
  void* mean = nullptr;
  void* rstd = nullptr;
};
void norm_forward(const NormForwardArgs& args, Stream stream);

int64_t norm_backward_workspace(int64_t rows, int64_t cols);

struct NormBackwardArgs {
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;
  bool center = true;
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* mean = nullptr;  // from the forward
  const void* rstd = nullptr;
  const void* dy = nullptr;
  void* dx = nullptr;         // each of dx, dweight, dbias may be null
  void* dweight = nullptr;
  void* dbias = nullptr;
  void* workspace = nullptr;  // norm_backward_workspace(rows, cols) statistics, when dweight or dbias is wanted
};
void norm_backward(const NormBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Softmax and log-softmax over the last dim of a contiguous [rows, cols] tensor (ops/ moves any
// other dim last first), forward and backward; `log` selects log-softmax. f32 math for bf16.
#include "base/layout.h"

namespace mgl::cuda {

// y = softmax(x) or log_softmax(x), row by row.
struct SoftmaxForwardArgs {
  bool log = false;
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // of x and y
  const void* x = nullptr;
  void* y = nullptr;
};
void softmax_forward(const SoftmaxForwardArgs& args, Stream stream);

// dx from the forward output y and its gradient dy:
//   softmax:      dx = y * (dy - sum(dy * y))
//   log-softmax:  dx = dy - exp(y) * sum(dy)
struct SoftmaxBackwardArgs {
  bool log = false;
  int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;  // of y, dy and dx
  const void* y = nullptr;
  const void* dy = nullptr;
  void* dx = nullptr;
};
void softmax_backward(const SoftmaxBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Softmax and log-softmax over the last dim of a contiguous [rows, cols] tensor (ops/ moves any
// other dim last first), forward and backward; `log` selects log-softmax. f32 math for bf16.
#include "base/layout.h"

namespace mgl::cuda {

// y = softmax(x) or log_softmax(x), row by row.
void softmax_forward(bool log, const void* x, void* y, DType dtype, int64_t rows, int64_t cols, Stream stream);
// dx from the forward output y and its gradient dy:
//   softmax:      dx = y * (dy - sum(dy * y))
//   log-softmax:  dx = dy - exp(y) * sum(dy)
void softmax_backward(bool log, const void* y, const void* dy, void* dx, DType dtype, int64_t rows, int64_t cols,
                      Stream stream);

}  // namespace mgl::cuda

#pragma once
// Fused log-softmax + negative log-likelihood over contiguous logits [rows, cols] with integer
// targets [rows] (i32 or i64, already checked to be in [0, cols) or equal to ignore_index).
// Per-row results are in the loss type: f32 for f32/bf16 logits, f64 for f64.
#include "base/layout.h"

namespace mgl::cuda {

// row_loss[r] = lse_r - logits[r, t_r] and row_lse[r] = lse_r = log sum_c exp(logits[r, c]);
// both 0 for rows whose target is ignore_index.
void cross_entropy_forward(const void* logits, DType dtype, const void* targets, DType target_dtype, int64_t rows,
                           int64_t cols, int64_t ignore_index, void* row_loss, void* row_lse, Stream stream);
// dlogits[r, c] = (exp(logits[r, c] - lse_r) - [c == t_r]) * dloss * scale, and 0 on ignored rows.
// dloss points to the one-element gradient of the loss (loss type, on the device), so no sync.
void cross_entropy_backward(const void* logits, DType dtype, const void* targets, DType target_dtype,
                            const void* row_lse, const void* dloss, double scale, int64_t rows, int64_t cols,
                            int64_t ignore_index, void* dlogits, Stream stream);

}  // namespace mgl::cuda

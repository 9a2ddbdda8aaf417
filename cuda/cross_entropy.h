#pragma once
// Fused log-softmax + negative log-likelihood over contiguous logits [rows, cols] with integer
// targets [rows] (i32 or i64, already checked to be in [0, cols) or equal to ignore_index).
// Per-row results are in the loss type: f32 for f32/bf16 logits, f64 for f64. The formulas are
// base/cross_entropy_math.h's.
#include "base/cross_entropy_math.h"
#include "base/layout.h"

namespace mgl::cuda {

// row_loss[r] = lse_r - logits[r, t_r] and row_lse[r] = lse_r = log sum_c exp(logits[r, c]);
// both 0 for rows whose target is ignore_index.
// logits [rows, cols] of `dtype`, targets [rows] of `target_dtype` (i32 or i64); row_loss, row_lse [rows]
// in the loss type (f32, f64 for f64 logits).
struct CrossEntropyForwardArgs {
  int64_t rows = 0, cols = 0, ignore_index = -100;
  DType dtype = DType::f32;
  DType target_dtype = DType::i64;
  const void* logits = nullptr;
  const void* targets = nullptr;
  void* row_loss = nullptr;
  void* row_lse = nullptr;
};
void cross_entropy_forward(const CrossEntropyForwardArgs& args, Stream stream);
// dlogits[r, c] = (exp(logits[r, c] - lse_r) - [c == t_r]) * dloss * scale, and 0 on ignored rows.
// dloss points to the one-element gradient of the loss (loss type, on the device), so no sync.
// dlogits has `dlogits_dtype`: the logits' own, or bf16 for f32 logits (linear_cross_entropy's f32
// logits of bf16 products, whose gradient goes on to bf16 GEMMs). Each element is read, then written,
// by the same thread, so dlogits may be the logits themselves when the dtypes agree.
struct CrossEntropyBackwardArgs {
  int64_t rows = 0, cols = 0, ignore_index = -100;
  DType dtype = DType::f32;
  DType dlogits_dtype = DType::f32;
  DType target_dtype = DType::i64;
  double scale = 1.0;
  const void* logits = nullptr;
  const void* targets = nullptr;
  const void* row_lse = nullptr;  // from the forward
  const void* dloss = nullptr;
  void* dlogits = nullptr;
};
void cross_entropy_backward(const CrossEntropyBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Matrix-vector products for decoding (a few token rows against a weight matrix), the bandwidth-bound
// core of a decoding step: every weight is read once per step, with 16-byte loads, and everything that
// would otherwise be an extra kernel around the product happens on the fly:
//
//   x̂[b] = normalise(x[b])                      (none, RMSNorm or LayerNorm of the input row)
//   a[b, o] = act(sum_k W[o, k] x̂[b, k] + bias[o])
//   y[b, o] = a[b, o] * row_scale[o] + residual[b, o] + residual2[b, o]
//
// normalise: rms:   x̂_k = x_k / sqrt(mean(x^2) + eps) * (norm_weight_k + 1)
//            layer: x̂_k = (x_k - mean(x)) / sqrt(var(x) + eps) * (norm_weight_k + 1) + norm_bias_k
// act: none, silu(a) = a / (1 + e^-a), or swiglu_pairs: the rows come in pairs (2i, 2i + 1) (fc1 row i
// and fc3 row i interleaved) and give one output y[b, i] = silu(a_2i) * a_2i+1.
//
// One launch runs up to kMaxGemvProblems products (e.g. the four projections of a block: they share
// no data but gain from one launch). Weights are row-major [rows, cols] in the launch's dtype (f32 or
// bf16); everything else is f32.
#include <cstdint>

#include "base/layout.h"

namespace mgl::cuda {

enum class GemvNorm { none, rms, layer };
enum class GemvActivation { none, silu, swiglu_pairs };

struct GemvProblem {
  const void* weight = nullptr;  // [rows, cols]
  int64_t rows = 0, cols = 0;
  const float* x = nullptr;  // [B, cols]
  GemvNorm norm = GemvNorm::none;
  const float* norm_weight = nullptr;  // [cols], applied as weight + 1; null: scale 1
  const float* norm_bias = nullptr;    // [cols] (layer only); null: 0
  float eps = 1e-5f;
  const float* bias = nullptr;  // [rows] or null
  GemvActivation activation = GemvActivation::none;
  // The outputs: rows of them, or rows / 2 for swiglu_pairs; output o of row b at [b * ld + o].
  const float* row_scale = nullptr;  // [outputs] or null
  const float* residual = nullptr;   // or null
  int64_t residual_ld = 0;
  const float* residual2 = nullptr;  // or null
  int64_t residual2_ld = 0;
  float* y = nullptr;  // may be residual (in-place update: each output reads its residual first)
  int64_t y_ld = 0;
};

constexpr int kMaxGemvProblems = 4;

struct GemvLaunch {
  DType dtype = DType::bf16;  // of the weights
  int64_t batch = 1;
  int count = 0;
  GemvProblem problems[kMaxGemvProblems];
};

// Checks the problems (shapes, pointers, alignment) and runs them in one launch.
void decode_gemv(const GemvLaunch& launch, Stream stream);

}  // namespace mgl::cuda

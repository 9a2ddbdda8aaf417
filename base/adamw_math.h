#pragma once
// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), computed as
// torch.optim.AdamW does, at step t of one f32 parameter p with gradient g and f32 moments m, v:
//
//   p <- p (1 - lr wd)                                     decoupled weight decay (not added to g)
//   m <- b1 m + (1 - b1) g                                 first moment
//   v <- b2 v + (1 - b2) g^2                               second moment
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   bias-corrected step
//
// The per-step scalars are formed once on the host (in f64, then rounded to f32). The update of
// one element is written once below, for the CPU loop (the reference) and the CUDA kernel, with
// explicit fmaf and no other multiply-add pair, so no compiler can contract the two differently:
// CPU and GPU compute the same bits.
#include <math.h>
#include <stdint.h>

#include "base/dtype.h"

namespace mgl {

struct AdamWScalars {
  float decay;                  // 1 - lr wd
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float step_size;              // lr / (1 - b1^t)
  float bias_correction2_sqrt;  // sqrt(1 - b2^t)
  float eps;
};

// A run of `count` contiguous f32 values of one parameter (or a piece of one), with its gradient and
// moments, updated with the scalars of its step: the unit of work of the CPU loop and the CUDA kernel.
// compute_copy (optional): the parameter's bf16 copy (nn/compute_copy.h), written with the new values
// rounded to nearest even in the same pass.
struct AdamWSpan {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;     // m
  float* exp_avg_sq = nullptr;  // v
  int64_t count = 0;
  AdamWScalars scalars{};
  bf16* compute_copy = nullptr;
};

MGL_HOST_DEVICE inline void adamw_update(float& p, float g, float& m, float& v, const AdamWScalars& s) {
  m = fmaf(s.beta1, m, s.one_minus_beta1 * g);
  v = fmaf(s.beta2, v, s.one_minus_beta2 * g * g);
  const float denominator = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
  p = fmaf(-s.step_size, m / denominator, p * s.decay);
}

}  // namespace mgl

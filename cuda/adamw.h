#pragma once
// The fused AdamW kernel: adamw_update (base/adamw_math.h, the same lines the CPU loop runs) over every
// element of one contiguous f32 parameter tensor.
#include "base/adamw_math.h"
#include "base/layout.h"

namespace mgl::cuda {

// One launch updates a whole contiguous parameter tensor in place: param, grad, exp_avg (m) and
// exp_avg_sq (v) hold count f32 values each.
struct AdamWStepArgs {
  int64_t count = 0;
  AdamWScalars scalars{};
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
};
void adamw_step(const AdamWStepArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// The fused AdamW kernel: adamw_update (base/adamw_math.h, the same lines the CPU loop runs) over every
// element of a list of contiguous f32 spans (whole parameter tensors, or pieces of them under ZeRO-1),
// in one multi-tensor launch (cuda/multi_tensor.h).
#include "base/adamw_math.h"
#include "base/layout.h"
#include "cuda/multi_tensor.h"

namespace mgl::cuda {

// Updates every span in place. spans and chunks are device arrays; skip_unless_finite (optional) points
// to one f64 on the device: when it is not finite the launch changes nothing (the step is skipped on the
// device, without the host reading the value, as PyTorch's GradScaler skips on found_inf).
struct AdamWMultiArgs {
  const AdamWSpan* spans = nullptr;
  const MultiTensorChunk* chunks = nullptr;
  int64_t chunk_count = 0;
  const double* skip_unless_finite = nullptr;
};
void adamw_step(const AdamWMultiArgs& args, Stream stream);

}  // namespace mgl::cuda

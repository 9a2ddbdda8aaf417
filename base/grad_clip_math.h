#pragma once
// The factor clip_grad_norm_ scales every gradient by (nn/grad_clip.h), written once for the CPU path and
// the CUDA kernel (cuda/grad_norm.cu), which reads the norm on the device:
//   c = max_norm / (norm + 1e-6), applied only when the norm is finite and c < 1.
#include <math.h>

#include "base/dtype.h"

namespace mgl {

// The scaling coefficient for a global norm, or 1 (leave the gradients as they are) when the norm is not
// finite or already within max_norm.
MGL_HOST_DEVICE inline double clip_coefficient(double norm, double max_norm) {
  const double c = max_norm / (norm + 1e-6);
  return isfinite(norm) && c < 1 ? c : 1.0;
}

}  // namespace mgl

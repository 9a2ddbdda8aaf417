#pragma once
// Dropout kernel: out[i] = keep(i) ? x[i] * scale : 0 over the row-major elements of x, with
// keep(i) = philox::uniform(seed, offset, i) >= p, the same rule the CPU applies (so both give the
// same mask bit for bit). x is read through its layout; out is contiguous.
#include "base/layout.h"

namespace mgl::cuda {

struct DropoutArgs {
  int64_t count = 0;
  DType dtype = DType::f32;  // of x and out
  uint64_t seed = 0, offset = 0;  // the Philox stream of the mask
  double p = 0;                   // drop probability
  double scale = 1;               // the factor of the kept values, 1 / (1 - p) in ops/dropout.cpp
  const void* x = nullptr;
  Layout x_layout;
  void* out = nullptr;  // contiguous
};
void dropout(const DropoutArgs& args, Stream stream);

}  // namespace mgl::cuda

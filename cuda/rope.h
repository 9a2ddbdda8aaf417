#pragma once
// Rotary position embedding kernel; ops/rope.cpp has the math, base/rope_math.h the angles the kernel
// shares with the CPU loop.
#include "base/layout.h"
#include "base/rope_math.h"

namespace mgl::cuda {

// y = x with every pair rotated by +angle (direction = 1) or by -angle (direction = -1, the
// backward). f32 and bf16 (computed in f32); x and y contiguous and of the same dtype.
struct RopeArgs {
  RopeShape shape;
  int direction = 1;
  DType dtype = DType::f32;
  const void* x = nullptr;
  void* y = nullptr;
};
void rope(const RopeArgs& args, Stream stream);

}  // namespace mgl::cuda

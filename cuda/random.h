#pragma once
// Philox fills on the GPU: the same numbers the CPU produces for the same (seed, offset).
#include "base/layout.h"

namespace mgl::cuda {

// What every fill below writes: count elements of dtype at dst, element i (row-major) at
// dst + layout.offset_of(i), which takes Philox index i of the stream (seed, offset).
struct PhiloxFill {
  int64_t count = 0;
  DType dtype = DType::f32;
  void* dst = nullptr;
  Layout layout;
  uint64_t seed = 0, offset = 0;
};

// Element i = low + (high - low) u_i, u_i the uniform draw of Philox index i.
struct UniformFillArgs {
  PhiloxFill fill;
  double low = 0, high = 1;
};
void uniform_fill(const UniformFillArgs& args, Stream stream);

// Element i = mean + stddev z_i, z_i the normal draw of Philox index i.
struct NormalFillArgs {
  PhiloxFill fill;
  double mean = 0, stddev = 1;
};
void normal_fill(const NormalFillArgs& args, Stream stream);

}  // namespace mgl::cuda

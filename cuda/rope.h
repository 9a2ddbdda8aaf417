#pragma once
// Rotary position embedding kernel; ops/rope.cpp has the math. The two helpers below are shared by
// the CPU loop and the kernel so both rotate by bit-identical angles.
#include <cmath>
#include <cstdint>

#include "base/layout.h"

namespace mgl::cuda {

struct RopeShape {
  int64_t batch = 0, seq = 0, heads = 0, dim = 0;  // x is contiguous [batch, seq, heads, dim]
  int64_t chunk_size = 1;                           // positions restart at 0 every chunk_size tokens
  int64_t start_position = 0;                       // position of token 0 within its chunk (KV-cache length)
  double base = 10000.0;
};

// Frequency of pair i: theta_i = base^(-2i/dim), evaluated in f64 and rounded to the compute type M.
template <class M>
MGL_HOST_DEVICE inline M rope_frequency(int64_t pair, int64_t dim, double base) {
  return static_cast<M>(::pow(base, -2.0 * static_cast<double>(pair) / static_cast<double>(dim)));
}

// Position of token t: start_position + (t mod chunk_size).
MGL_HOST_DEVICE inline int64_t rope_position(const RopeShape& shape, int64_t t) {
  return shape.start_position + t % shape.chunk_size;
}

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

#pragma once
// Rotary position embedding's angles (ops/rope.cpp has the whole math), written once for the CPU
// reference (ops/rope.cpp), the kernel (cuda/rope.cu) and the decoder's frequency table
// (nn/cuda_decoder.cpp), so all of them rotate by bit-identical angles: pair i of token t turns by
// rope_position(t) * rope_frequency(i).
#include <math.h>

#include <cstdint>

#include "base/dtype.h"

namespace mgl {

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

}  // namespace mgl

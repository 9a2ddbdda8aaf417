#pragma once
// TimestepNorm kernels (docs/megalodon.md §2.2): the forward as a parallel scan over time, the backward
// as a parallel scan of the affine adjoint recurrence. Plain C++ so ops/ can include it without CUDA.
// The formulas and types the kernels share with the CPU reference (PaddingMask, TimestepNormSizes, the
// Welford fold, the adjoint step) are in base/timestep_norm_math.h.
//
// Layouts (all contiguous, row-major): x, y, dy, dx [B, L, D]; per-step statistics [B, L, G];
// states [B, G] (counts [B]). T is the dtype of x (f32, bf16 or f64); the statistics dtype S is f32,
// or f64 when T is f64.
#include <cstdint>

#include "base/layout.h"
#include "base/timestep_norm_math.h"

namespace mgl::cuda {

// The scans cut time into chunks of this many steps (a power of two in [16, 256]): short chunks give
// B * G * chunks threads to keep the GPU busy; the doubling stops once there are enough, which keeps
// the per-column scan over chunk summaries short. The backward reuses the forward's chunk counts,
// so both ask here.
inline int64_t timestep_norm_chunk_length(const TimestepNormSizes& s) {
  constexpr int64_t kEnoughThreads = 65536;
  int64_t chunk = 16;
  while (chunk < 256 && s.batch * s.groups * ((s.length + chunk - 1) / chunk) > kEnoughThreads) chunk *= 2;
  return chunk;
}
inline int64_t timestep_norm_chunks(const TimestepNormSizes& s) {
  const int64_t chunk = timestep_norm_chunk_length(s);
  return (s.length + chunk - 1) / chunk;
}

// Rows (of D values) per block of the kernel that forms dx and the partial sums of dweight, dbias.
constexpr int64_t kTimestepNormRowTile = 64;

// Scratch memory, in elements of the statistics dtype:
//  forward: per-step group moments (m_t, s_t) and per-chunk summaries (steps, mean, variance);
//  backward: per-step (m_t, P_t, S_t), per-chunk adjoint maps (4 numbers), dweight/dbias partials.
inline int64_t timestep_norm_forward_workspace(const TimestepNormSizes& s) {
  const int64_t columns = s.batch * s.groups;
  return 2 * columns * s.length + 3 * columns * timestep_norm_chunks(s);
}
inline int64_t timestep_norm_backward_workspace(const TimestepNormSizes& s) {
  const int64_t columns = s.batch * s.groups;
  const int64_t row_tiles = (s.batch * s.length + kTimestepNormRowTile - 1) / kTimestepNormRowTile;
  return 3 * columns * s.length + 4 * columns * timestep_norm_chunks(s) + 2 * row_tiles * s.dim;
}

struct TimestepNormForwardArgs {
  TimestepNormSizes sizes;
  DType dtype = DType::f32;  // of x, weight, bias, y
  double eps = 1e-5;
  const void* x = nullptr;
  const void* weight = nullptr;  // [D], applied as weight + 1
  const void* bias = nullptr;    // [D]
  PaddingMask mask;
  const int64_t* count_in = nullptr;  // [B]
  const void* mean_in = nullptr;      // [B, G] S
  const void* var_in = nullptr;       // [B, G] S
  void* y = nullptr;
  int64_t* count_out = nullptr;
  void* mean_out = nullptr;
  void* var_out = nullptr;
  void* step_mean = nullptr;         // [B, L, G] S: mu_t, saved for backward
  void* step_rstd = nullptr;         // [B, L, G] S: 1 / sqrt(v_t + eps), saved for backward
  int64_t* chunk_count = nullptr;    // [B, chunks + 1]: count before each chunk, then the final count
  void* workspace = nullptr;         // timestep_norm_forward_workspace(sizes) elements of S
};
void timestep_norm_forward(const TimestepNormForwardArgs& args, Stream stream);

struct TimestepNormBackwardArgs {
  TimestepNormSizes sizes;
  DType dtype = DType::f32;
  const void* dy = nullptr;         // [B, L, D]
  const void* dmean_out = nullptr;  // [B, G] S: gradient reaching the outgoing state
  const void* dvar_out = nullptr;
  const void* x = nullptr;
  const void* weight = nullptr;
  PaddingMask mask;
  const void* mean_in = nullptr;       // the incoming mean (mu before step 0)
  const void* step_mean = nullptr;     // from the forward
  const void* step_rstd = nullptr;
  const int64_t* chunk_count = nullptr;
  void* dx = nullptr;
  void* dweight = nullptr;   // [D]
  void* dbias = nullptr;     // [D]
  void* dmean_in = nullptr;  // [B, G] S
  void* dvar_in = nullptr;
  void* workspace = nullptr;  // timestep_norm_backward_workspace(sizes) elements of S
};
void timestep_norm_backward(const TimestepNormBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

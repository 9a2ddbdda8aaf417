#pragma once
// Attention of one new token per sequence over the current partial chunk (spec §2.5.2 steps 2-3 and 6-8,
// §6.2), for decoding. With m = *position the number of keys already cached in the chunk, for every
// sequence b and head h:
//
//   ẑ = z_h / sqrt(mean(z_h^2) + eps)                        (per-head RMS normalisation of M Wzᵀ + bz)
//   q = RoPE_m(ẑ ⊙ qk_scale[0] + qk_offset[0]),  k = RoPE_m(ẑ ⊙ qk_scale[1] + qk_offset[1])
//       with qk_scale = (gamma + 1)/sqrt(dz), RoPE_m the rotation of pair i by m·base^(-2i/dz)
//   keys[m] = k, values[m] = v_h                              (the KV cache of the chunk grows by one)
//   s_j = q · keys[j],  p = softmax(s_0 .. s_m)               (scale 1, f32)
//   out_h = (sum_j p_j values[j]) ⊙ gate_h                   (O ⊙ R)
//
// Three kernels: scores (which also forms q and k and appends k, v to the cache), the weighted sum
// of values over key splits (flash-decoding: splits run in parallel, partial sums in `partial`), and
// the sum of the splits times the gate. The launch sizes depend only on the chunk size, never on m,
// so one captured graph serves every position; blocks past position m return at once.
#include <cstdint>

#include "cuda/layout.h"

namespace mgl::cuda {

// Keys per split of the weighted sum of values; `partial` holds decode_attention_splits(c) splits.
constexpr int64_t kDecodeKeysPerSplit = 64;
inline int64_t decode_attention_splits(int64_t chunk_size) {
  return (chunk_size + kDecodeKeysPerSplit - 1) / kDecodeKeysPerSplit;
}

struct DecodeAttentionArgs {
  int64_t batch = 0, heads = 0, dz = 0, dv = 0, chunk_size = 0;
  double rope_base = 10000.0;
  float eps = 1e-5f;
  DType dtype = DType::bf16;         // of the caches
  const int32_t* position = nullptr;  // device: m in [0, chunk_size)
  const float* z = nullptr;           // [B, z_ld]: the H * dz values M Wzᵀ + bz of each token
  int64_t z_ld = 0;
  const float* qk_scale = nullptr;   // [2, H * dz]: (gamma + 1)/sqrt(dz), queries then keys
  const float* qk_offset = nullptr;  // [2, H * dz]: beta
  const float* v = nullptr;          // [B, v_ld]: the H * dv values silu(T Wvᵀ + bv)
  int64_t v_ld = 0;
  const float* gate = nullptr;  // [B, gate_ld]: R = silu(M Wrᵀ + br)
  int64_t gate_ld = 0;
  void* keys = nullptr;     // [B, c, H, dz] of dtype
  void* values = nullptr;   // [B, c, H, dv] of dtype
  float* scores = nullptr;   // [B, H, c]
  float* partial = nullptr;  // [splits, B, H, dv]
  float* out = nullptr;      // [B, H * dv]
};

void decode_attention(const DecodeAttentionArgs& args, Stream stream);

}  // namespace mgl::cuda

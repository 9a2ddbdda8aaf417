#pragma once
// Attention of one new token per sequence over the current partial chunk (docs/megalodon.md §2.5.2
// steps 2-3 and 6-8, §6.2), for decoding. With m = *position the number of keys already cached in the
// chunk, for every sequence b and head h:
//
//   ẑ = z_h / sqrt(mean(z_h^2) + eps)                        (per-head RMS normalisation of M Wzᵀ + bz)
//   q = RoPE_m(ẑ ⊙ qk_scale[0] + qk_offset[0]),  k = RoPE_m(ẑ ⊙ qk_scale[1] + qk_offset[1])
//       with qk_scale = (gamma + 1)/sqrt(dz), RoPE_m the rotation of pair i by m·base^(-2i/dz)
//   keys[m] = k, values[m] = v_h                              (the KV cache of the chunk grows by one)
//   s_j = q · keys[j],  p = softmax(s_0 .. s_m)               (scale 1, f32)
//   out_h = (sum_j p_j values[j]) ⊙ gate_h                   (O ⊙ R)
//
// Flash-decoding in two kernels: the chunk's keys are cut into splits of 64 and the value channels
// into groups of 256, and one block per (split, group, sequence and head) forms q (and, in the split
// that holds position m, k, which it appends with v to the cache), scores its keys, and sums its
// keys' values weighted by exp(s_j - max of its split). It writes that partial sum and its split's
// (max, sum of exponentials); a second kernel, one block per (group, sequence and head), merges the
// splits:
//   M = max over splits of max_s,  L = sum_s sum_s e^(max_s - M),  out = gate ⊙ sum_s e^(max_s - M) partial_s / L
// in split order. The launch sizes depend only on the chunk size, never on m, so one captured graph
// serves every position; blocks past position m return at once.
#include <cstdint>

#include "base/layout.h"

namespace mgl::cuda {

// Keys per split and value channels per group; the scratch buffers hold decode_attention_splits(c)
// splits and decode_attention_groups(dv) groups.
constexpr int64_t kDecodeKeysPerSplit = 64;
constexpr int64_t kDecodeChannelsPerGroup = 256;
inline int64_t decode_attention_splits(int64_t chunk_size) {
  return (chunk_size + kDecodeKeysPerSplit - 1) / kDecodeKeysPerSplit;
}
inline int64_t decode_attention_groups(int64_t dv) {
  return (dv + kDecodeChannelsPerGroup - 1) / kDecodeChannelsPerGroup;
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
  const float* rope_frequencies = nullptr;  // [dz / 2]: base^(-2i/dz) (rope_frequency<float>)
  const float* v = nullptr;          // [B, v_ld]: the H * dv values silu(T Wvᵀ + bv)
  int64_t v_ld = 0;
  const float* gate = nullptr;  // [B, gate_ld]: R = silu(M Wrᵀ + br)
  int64_t gate_ld = 0;
  void* keys = nullptr;     // [B, c, H, dz] of dtype
  void* values = nullptr;   // [B, c, H, dv] of dtype
  float* partial = nullptr;      // [splits, B, H, dv]: each split's weighted sum of values
  float* split_stats = nullptr;  // [splits, B, H, groups, 2]: each split's (max, sum of exponentials)
  float* out = nullptr;          // [B, H * dv]
};

void decode_attention(const DecodeAttentionArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Kernels of one MEGALODON decoding step that are not matrix products or attention (nn/cuda_decoder.h
// drives them; docs/decode.md maps the math to the kernels): the embedding lookup, the TimestepNorm
// step fused with the CEMA step, and the advance of the position within the attention chunk.
//
// Every per-token quantity (the token ids, the position) is read from device memory, never passed as
// an argument, so that one captured CUDA graph replays the step for every token. Activations are f32
// [B, D] rows; tables are in the compute dtype (f32 or bf16); the states are f32.
#include <cstdint>

#include "base/layout.h"
#include "cuda/cema.h"

namespace mgl::cuda {

// x[b, :] = scale * table[ids[b], :] for the B ids in device memory (table [vocab, D] of `dtype`). An
// id outside [0, vocab) yields a row of NaN, so the error shows in the logits instead of a wild read.
struct DecodeEmbedArgs {
  int64_t batch = 0, vocab = 0, dim = 0;
  DType dtype = DType::bf16;  // of the table: f32 or bf16
  const void* table = nullptr;
  float scale = 1;
  const int64_t* ids = nullptr;  // [B], device
  float* x = nullptr;            // [B, D]
};
void decode_embed(const DecodeEmbedArgs& args, Stream stream);

// One TimestepNorm step for B tokens (docs/megalodon.md §2.2.2), optionally followed by the CEMA step of
// its output (docs/megalodon.md §2.3.4). Per sequence b and group g of dg = D/G channels:
//   m, s = mean and population variance of the group's dg values of x[b]
//   (n, mu, v) <- merge((n, mu, v), (1, m, s)), the Welford fold of base/timestep_norm_math.h: with n = 0
//       the step replaces the prior; else wa = n/(n+1), wb = 1/(n+1), d = m - mu, v += wb((s - v) + wa d^2),
//       mu += wb d
//   y[b, k] = (x[b, k] - mu) / sqrt(v + eps) * (weight[k] + 1) + bias[k]
// and, when cema_h is not null, for every channel k of the group:
//   h[b, k, n] <- q[k, n] h[b, k, n] + p[k, n] y[b, k];   u[b, k] = Re(sum_n gamma[k, n] h[b, k, n]) + omega[k] y[b, k]
struct DecodeNormArgs {
  int64_t batch = 0, dim = 0, groups = 1;
  float eps = 1e-5f;
  const float* x = nullptr;       // [B, D]
  const float* weight = nullptr;  // [D], applied as weight + 1
  const float* bias = nullptr;    // [D]
  // The running state. Each group keeps its own copy of the count (all copies are equal), so that
  // the blocks of different groups never write to the same word.
  int64_t* count = nullptr;  // [B, G]
  float* mean = nullptr;     // [B, G]
  float* var = nullptr;      // [B, G]
  float* y = nullptr;        // [B, D]
  // CEMA (skipped when cema_h is null): f32 coefficients (cema_coefficients()), state, output.
  int64_t modes = 0;
  CemaCoefficientPointers cema;
  Complex<float>* cema_h = nullptr;  // [B, D, N]
  float* cema_y = nullptr;           // [B, D]
};
void decode_timestep_norm(const DecodeNormArgs& args, Stream stream);

// position <- (position + 1) mod chunk_size: the token just decoded joins the chunk; when the chunk
// is complete the KV cache counts as empty again (docs/megalodon.md §6.2).
struct DecodeAdvanceArgs {
  int64_t chunk_size = 1;
  int32_t* position = nullptr;  // device
};
void decode_advance(const DecodeAdvanceArgs& args, Stream stream);

}  // namespace mgl::cuda

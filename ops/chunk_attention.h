#pragma once
// MEGALODON's chunk-wise causal attention (spec §2.5.2 step 7, §2.5.4, §6.2): softmax attention
// computed independently inside each chunk of c tokens (block-diagonal causal attention), as one
// fused differentiable op.
#include <cstdint>

#include "core/random.h"
#include "core/tensor.h"

namespace mgl {

struct AttentionOptions {
  double scale = 1.0;    // logits are scale * q . k (MEGALODON: 1, its q and k are normalised)
  double dropout = 0.0;  // probability of zeroing an attention probability; pass 0 at evaluation
  Generator* generator = nullptr;  // the dropout stream (nullptr: default_generator())
};

// Training form. q, k [B, L, H, dz], v [B, L, H, dv] -> o [B, L, H, dv]: token t attends the tokens
// of its own chunk up to itself. L must be <= chunk_size (one partial chunk) or a multiple of it.
Tensor chunk_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t chunk_size,
                       const AttentionOptions& options = {});

// Inference form for the current partial chunk: q [B, n, H, dz] against k [B, m, H, dz] and
// v [B, m, H, dv] with m >= n (the first m - n keys are the KV cache). Query i sees key j iff
// j <= i + m - n. Same kernels as the training form (one chunk of n queries and m keys).
Tensor chunk_attention_cached(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options = {});

}  // namespace mgl

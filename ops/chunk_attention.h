#pragma once
// MEGALODON's chunk-wise causal attention (docs/megalodon.md §2.5.2 step 7, §2.5.4, §6.2): softmax
// attention computed independently inside each chunk of c tokens (block-diagonal causal attention), as
// one fused differentiable op.
#include <cstdint>

#include "core/random.h"
#include "core/tensor.h"

namespace mgl {

// What attention dropout removes (docs/megalodon.md §2.5.5, §2.8):
//   probabilities: inverted dropout after the softmax, P̃ = P ⊙ M / (1 - p) (the official unfused path);
//   keys: DropKey (the official fused path): each logit is set to -inf with probability p before the
//     softmax, no rescaling; the survivors' probabilities sum to 1, and a query whose every visible
//     key is dropped gets all-zero probabilities (output 0, no gradient).
enum class AttentionDropout { probabilities, keys };

struct AttentionOptions {
  double scale = 1.0;    // logits are scale * q . k (MEGALODON: 1, its q and k are normalised)
  double dropout = 0.0;  // probability of dropping an attention probability or logit; pass 0 at evaluation
  Generator* generator = nullptr;  // the dropout stream (nullptr: default_generator())
  AttentionDropout dropout_kind = AttentionDropout::probabilities;
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

#pragma once
// Chunk-wise causal attention's indexing, causal mask and dropout (of either kind), defined once for the
// CPU reference (ops/chunk_attention.cpp, which has the math) and the kernels (cuda/chunk_attention.cu)
// alike: both see the same keys and drop the same probabilities.
#include <cstdint>

#include "base/dtype.h"
#include "base/philox.h"

namespace mgl {

// batch x chunks x heads independent attention blocks, numbered block = (b * chunks + chunk) * heads + h.
// Block (b, chunk, h) attends its q_len queries (tokens chunk*q_len ... of q) to its k_len keys and
// values (tokens chunk*k_len ... of k and v); query i sees key j iff j <= i + (k_len - q_len) (causal,
// aligned at the bottom right, so the last query sees every key: with k_len > q_len the first keys
// are a KV cache). Tensors are contiguous: q [batch, chunks*q_len, heads, dz], k [batch,
// chunks*k_len, heads, dz], v [batch, chunks*k_len, heads, dv], o [batch, chunks*q_len, heads, dv];
// per-query statistics (logsumexp, delta) are f32 [batch, chunks*q_len, heads].
struct AttentionShape {
  int64_t batch = 0, heads = 0, chunks = 0, q_len = 0, k_len = 0, dz = 0, dv = 0;
  double scale = 1.0;    // S = scale * Q K^T
  double dropout = 0.0;  // probability of dropping an attention probability, or a logit under DropKey (0 = off)
  bool drop_keys = false;  // DropKey: dropout removes logits before the softmax, without rescaling
  uint64_t seed = 0, offset = 0;  // the Philox stream of the dropout mask
};

// Row index (token, head) of query i / key j of a block, into the [.., tokens, heads] layouts above.
MGL_HOST_DEVICE inline int64_t query_row(const AttentionShape& s, int64_t block, int64_t i) {
  return ((block / s.heads) * s.q_len + i) * s.heads + block % s.heads;
}
MGL_HOST_DEVICE inline int64_t key_row(const AttentionShape& s, int64_t block, int64_t j) {
  return ((block / s.heads) * s.k_len + j) * s.heads + block % s.heads;
}

// The causal mask (false also outside the block, for the padding rows of a tile).
MGL_HOST_DEVICE inline bool attends(const AttentionShape& s, int64_t i, int64_t j) {
  return i < s.q_len && j < s.k_len && j <= i + (s.k_len - s.q_len);
}

// The dropout mask: element (block, i, j) is dropped iff its uniform draw is < p. It owns Philox
// index (block * q_len + i) * k_len + j, so the mask is a pure function of (seed, offset) and backward
// regenerates it instead of storing it.
MGL_HOST_DEVICE inline bool dropped(const AttentionShape& s, int64_t block, int64_t i, int64_t j) {
  if (s.dropout <= 0.0) return false;
  const uint64_t index = (static_cast<uint64_t>(block) * s.q_len + i) * s.k_len + j;
  return static_cast<double>(philox::uniform(s.seed, s.offset, index)) < s.dropout;
}

// Whether logit (i, j) of a block enters the softmax: the causal mask, and under DropKey the dropout
// mask too (a dropped logit is -inf: it gets probability 0 and the survivors share all of the mass;
// a row whose every visible key is dropped gets no probability at all, so its output is 0).
MGL_HOST_DEVICE inline bool in_softmax(const AttentionShape& s, int64_t block, int64_t i, int64_t j) {
  return attends(s, i, j) && !(s.drop_keys && dropped(s, block, i, j));
}

// Inverted dropout on probability (i, j) of a block: 0 if dropped, else 1/(1-p). 1 under DropKey,
// whose mask acts through in_softmax() instead.
template <class M>
MGL_HOST_DEVICE inline M dropout_factor(const AttentionShape& s, int64_t block, int64_t i, int64_t j) {
  if (s.drop_keys || s.dropout <= 0.0) return M(1);
  return dropped(s, block, i, j) ? M(0) : M(1) / (M(1) - static_cast<M>(s.dropout));
}

}  // namespace mgl

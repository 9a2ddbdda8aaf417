#pragma once
// Chunk-wise causal attention as cuBLAS GEMMs over tiles of each block's queries, with a softmax and
// a score-gradient kernel between them (cuda/chunk_attention.cu has the tiling and its costs);
// ops/chunk_attention.cpp has the math, base/chunk_attention_math.h the problem's indexing, mask and
// dropout that the kernels share with the CPU reference.
#include <cstdint>

#include "base/chunk_attention_math.h"
#include "base/layout.h"

namespace mgl::cuda {

enum class AttentionPass { forward, backward };

// Bytes of scratch a pass needs for this shape and dtype (a multiple of 256; 0 for an empty problem):
// the score and probability tiles of a group of blocks, at most ~256 MiB unless a single block needs
// more (cuda/chunk_attention.cu).
int64_t chunk_attention_workspace_bytes(const AttentionShape& shape, DType dtype, AttentionPass pass);

// Forward: o = softmax(scale Q K^T + mask) V per block (dropout on the probabilities, or DropKey's
// dropped logits in the mask), and the logsumexp of every query row (f32; -inf for a row with no
// logit left) for the backward. f32 (f32 GEMMs, no TF32) or bf16 (tensor cores, f32 accumulation).
struct ChunkAttentionForwardArgs {
  AttentionShape shape;
  DType dtype = DType::f32;  // of q, k, v, o
  int device = 0;            // the current device: its cuBLAS handle runs the products (cuda/matmul.h)
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* logsumexp = nullptr;  // [batch, chunks*q_len, heads]
  void* workspace = nullptr;   // chunk_attention_workspace_bytes(shape, dtype, forward) bytes, 16-byte aligned
};
void chunk_attention_forward(const ChunkAttentionForwardArgs& args, Stream stream);

// Backward: dq, dk, dv from do, recomputing the probabilities from q, k and the saved logsumexp.
struct ChunkAttentionBackwardArgs {
  AttentionShape shape;
  DType dtype = DType::f32;  // of every tensor but the f32 statistics
  int device = 0;            // the current device
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* o = nullptr;
  const void* grad_o = nullptr;
  const float* logsumexp = nullptr;  // from the forward
  float* delta = nullptr;            // scratch of the logsumexp's size (it receives rowsum(do * o))
  void* grad_q = nullptr;
  void* grad_k = nullptr;
  void* grad_v = nullptr;
  void* workspace = nullptr;  // chunk_attention_workspace_bytes(shape, dtype, backward) bytes, 16-byte aligned
};
void chunk_attention_backward(const ChunkAttentionBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Chunk-wise causal attention kernels (FlashAttention-style: no probability matrix in memory);
// ops/chunk_attention.cpp has the math, base/chunk_attention_math.h the problem's indexing, mask and
// dropout that the kernels share with the CPU reference.
#include <cstdint>

#include "base/chunk_attention_math.h"
#include "base/layout.h"

namespace mgl::cuda {

// Forward: o = softmax(scale Q K^T + mask) V per block (dropout on the probabilities, or DropKey's
// dropped logits in the mask), and the logsumexp of every query row (f32; -inf for a row with no
// logit left) for the backward. f32 or bf16 inputs; f32 arithmetic; dz <= 256.
struct ChunkAttentionForwardArgs {
  AttentionShape shape;
  DType dtype = DType::f32;  // of q, k, v, o
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* logsumexp = nullptr;  // [batch, chunks*q_len, heads]
};
void chunk_attention_forward(const ChunkAttentionForwardArgs& args, Stream stream);

// Backward: dq, dk, dv from do, recomputing the probabilities from q, k and the saved logsumexp.
struct ChunkAttentionBackwardArgs {
  AttentionShape shape;
  DType dtype = DType::f32;  // of every tensor but the f32 statistics
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
};
void chunk_attention_backward(const ChunkAttentionBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Greedy choice of the next token on the device, so that decoding runs step after step without the
// host in the loop (nn/cuda_decoder.h). For each sequence b, over the ids i < choices:
//
//   s_i = l_i / ρ if l_i > 0, else l_i ρ     for the ids marked in seen[b] (CTRL repetition penalty)
//   s_i = l_i                                 otherwise
//   ids[b] = arg max_i s_i (ties to the lowest id),   seen[b, ids[b]] = 1
//
// in double, exactly as apps::Sampler's greedy choice. A NaN or +inf logit among the choices gives
// ids[b] = -1, which the host reports (and the next step's embedding turns into NaN, not a wild read).
#include <cstdint>

#include "base/layout.h"

namespace mgl::cuda {

struct DecodeGreedyArgs {
  int64_t batch = 0;
  int64_t vocab = 0;    // row length of logits and seen
  int64_t choices = 0;  // ids [0, choices) may be chosen (a tokenizer may have fewer ids than the model)
  const float* logits = nullptr;  // [B, vocab]
  double repetition_penalty = 1.0;
  int32_t* seen = nullptr;  // [B, vocab]: 1 where the penalty applies; the choice is marked
  int64_t* ids = nullptr;   // [B]
};

void decode_greedy(const DecodeGreedyArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Model FLOPs of MEGALODON training, per token: what MFU divides by the peak (docs/perf.md, "Model FLOPs").
//
// A training step is one forward and one backward; the backward of a matrix product costs two products
// (the gradients of the input and of the weight), so every term is 3 x its forward count.
//
//   dense      = 6 * P_dense, P_dense = the weights of every matrix a token meets: per block wz (Z x D),
//                wv and wr (V x D each), wh1 (D x D), wh2 (D x V), the FFN's fc1, fc2 (and fc3 with SwiGLU,
//                F x D each); then the LM head (vocab x D, counted even when tied to the embedding, since
//                the product still runs). The embedding lookup, biases, norms and elementwise ops move
//                memory but are not matrix FLOPs and are left out, as in the usual 6N rule.
//   attention  = 3 * 2 * c_eff * (Z + V) per block: per head, a query meets c_eff keys on average and
//                pays 2 dz FLOPs for each score (QK^T) and 2 dv for each value it weights (PV); summed
//                over the H heads that is 2 c_eff (Z + V). Attention is causal within chunks of
//                c = chunk_size tokens, so the i-th token of a chunk (from 1) sees i keys; over a sequence
//                of L tokens cut into chunks (the last one possibly shorter), c_eff = sum_chunks s(s+1)/2 / L,
//                which is (c + 1) / 2 when c divides L and (L + 1) / 2 when L < c.
//   cema       = 3 * D * (12 N + 2) per block: the engine computes CEMA as its recurrence (docs/megalodon.md
//                §2.3.2, §2.3.6), per channel and mode and token h = q h + p x (a complex product, 6 FLOPs,
//                plus the real p x added, 2) and y += Re(gamma h) (3 FLOPs and the sum, 1): 12 N; the skip
//                omega x adds 2 per channel. The FFT form (§2.3.3) would instead cost O(log L) per token and
//                channel; either way it is well under 1 % of the dense term for the presets.
#include <cstdint>

#include "nn/megalodon_config.h"

namespace mgl::nn {

struct ModelFlops {
  double dense = 0;      // 6 x the matrix weights a token meets (blocks and LM head)
  double attention = 0;  // chunk attention's QK^T and PV, forward and backward
  double cema = 0;       // CEMA's recurrence, forward and backward
  double total() const { return dense + attention + cema; }
};

// Training FLOPs per token of `config` on sequences of `seq_len` tokens (seq_len >= 1).
ModelFlops megalodon_flops_per_token(const MegalodonConfig& config, int64_t seq_len);

// The mean number of keys a query sees under attention causal within chunks of `chunk` tokens over a
// sequence of `seq_len` tokens (c_eff above).
double mean_keys_per_query(int64_t seq_len, int64_t chunk);

}  // namespace mgl::nn

#include "nn/flops.h"

#include "base/error.h"

namespace mgl::nn {

double mean_keys_per_query(int64_t seq_len, int64_t chunk) {
  MGL_CHECK(seq_len >= 1 && chunk >= 1, "mean_keys_per_query: seq_len (", seq_len, ") and chunk (", chunk,
            ") must be >= 1");
  // A chunk of s tokens holds s (s + 1) / 2 query-key pairs.
  const auto pairs = [](int64_t s) { return static_cast<double>(s) * static_cast<double>(s + 1) / 2.0; };
  const int64_t full = seq_len / chunk, rest = seq_len % chunk;
  return (static_cast<double>(full) * pairs(chunk) + pairs(rest)) / static_cast<double>(seq_len);
}

ModelFlops megalodon_flops_per_token(const MegalodonConfig& config, int64_t seq_len) {
  const double D = static_cast<double>(config.model_dim), Z = static_cast<double>(config.z_dim),
               V = static_cast<double>(config.value_dim), F = static_cast<double>(config.ffn_hidden_dim),
               N = static_cast<double>(config.cema_ndim), layers = static_cast<double>(config.num_layers);
  const double block_weights = Z * D + 2 * V * D + D * D + D * V + (config.swiglu ? 3 : 2) * F * D;
  const double head_weights = static_cast<double>(config.vocab_size) * D;
  ModelFlops flops;
  flops.dense = 6 * (layers * block_weights + head_weights);
  flops.attention = layers * 3 * 2 * mean_keys_per_query(seq_len, config.chunk_size) * (Z + V);
  flops.cema = layers * 3 * D * (12 * N + 2);
  return flops;
}

}  // namespace mgl::nn

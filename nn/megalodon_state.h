#pragma once
// The streaming state of a MEGALODON model: what one call hands to the next so that a sequence can be
// processed in pieces (generation, long-context scoring, chunk parallelism) with the same result as
// one call over the whole sequence (spec §3.1, §6.1). Its size does not grow with the context.
#include <vector>

#include "core/tensor.h"
#include "ops/timestep_norm.h"

namespace mgl::nn {

struct LayerState {
  TimestepNormState norm;  // the block's TimestepNorm running statistics
  Tensor cema;             // [B, D, N, 2] CEMA hidden state (undefined: zero)
  Tensor keys, values;     // [B, m, H, dz] / [B, m, H, dv]: the current partial chunk (m < c; undefined: empty)

  int64_t cached_tokens() const { return keys.defined() ? keys.size(1) : 0; }
};

struct ModelState {
  std::vector<LayerState> layers;
  TimestepNormState final_norm;

  bool empty() const { return layers.empty(); }
};

}  // namespace mgl::nn

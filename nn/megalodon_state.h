#pragma once
// The streaming state of a MEGALODON model: what one call hands to the next so that a sequence can be
// processed in pieces (generation, long-context scoring, chunk parallelism) with the same result as
// one call over the whole sequence (docs/megalodon.md §3.1, §6.1). Its size does not grow with the context.
#include <functional>
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

// Called by a block between its TimestepNorm + CEMA and the rest, with the state they hand on and
// the CEMA output; returns the tensor the rest of the block uses in place of that output. Chunk
// parallelism sends the state to the next rank here (nn/chunk_parallel.h), so the send overlaps this
// rank's attention and FFN.
using StateHandoff = std::function<Tensor(const LayerState& state, const Tensor& cema_output)>;

struct ModelState {
  std::vector<LayerState> layers;
  TimestepNormState final_norm;

  bool empty() const { return layers.empty(); }
};

}  // namespace mgl::nn

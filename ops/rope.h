#pragma once
// Rotary position embedding (RoPE) as MEGALODON applies it to queries and keys (docs/megalodon.md §2.5.3):
// interleaved pairs, positions that restart at 0 in every attention chunk.
#include <cstdint>

#include "core/tensor.h"

namespace mgl {

// x [B, L, H, d] (d even) -> the same shape and dtype. Token t is at position
// start_position + (t mod chunk_size); start_position (the KV-cache length, in [0, chunk_size)) lets
// a call continue a partial chunk, in which case the L tokens must not cross the chunk's end.
Tensor rope(const Tensor& x, int64_t chunk_size, int64_t start_position = 0, double base = 10000.0);

}  // namespace mgl

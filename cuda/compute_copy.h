#pragma once
// The refresh of compute copies (nn/compute_copy.h) after ZeroAdamW's all-gather: every listed f32
// parameter cast to its bf16 copy in one multi-tensor launch (cuda/multi_tensor.h), instead of one cast
// per parameter.
#include <cstdint>

#include "base/layout.h"
#include "cuda/multi_tensor.h"

namespace mgl::cuda {

// One parameter: count contiguous f32 values and its bf16 copy.
struct CastSpan {
  const float* source = nullptr;
  bf16* copy = nullptr;
  int64_t count = 0;
};

// copy[i] = source[i] rounded to nearest even (as copy_ rounds) for every span. spans and chunks are
// device arrays.
struct CastMultiArgs {
  const CastSpan* spans = nullptr;
  const MultiTensorChunk* chunks = nullptr;
  int64_t chunk_count = 0;
};
void cast_to_bf16(const CastMultiArgs& args, Stream stream);

}  // namespace mgl::cuda

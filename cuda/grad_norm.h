#pragma once
// The global gradient norm and clipping of nn/grad_clip.h over a list of contiguous f32 or bf16 tensors,
// each a multi-tensor launch (cuda/multi_tensor.h): sums of squares in f64, deterministic (no atomics),
// and a scaling by a coefficient formed on the device from the norm, so the host reads nothing.
#include <cstdint>

#include "base/layout.h"
#include "cuda/multi_tensor.h"

namespace mgl::cuda {

// One tensor of the list: count contiguous values of `dtype` (f32 or bf16); first_chunk is the index of
// its first chunk in the list's chunk array (chunks are in list order), weight its weight in the total.
struct GradTensor {
  void* data = nullptr;
  int64_t count = 0;
  DType dtype = DType::f32;
  int64_t first_chunk = 0;
  double weight = 1.0;
};

// squares[t] = sum_k x_t[k]^2 for each of the n tensors and *total = sum_t weight_t squares[t], in f64.
// Two passes: each chunk's sum of squares into partials[chunk] (one block a chunk, a fixed block
// reduction), then one block in which thread t adds its tensor's partials in chunk order and thread 0
// adds the weighted squares in list order. The same list gives the same bits; a NaN or inf in x_t makes
// squares[t] and the total non-finite.
struct SumOfSquaresArgs {
  const GradTensor* tensors = nullptr;  // [n], device
  const MultiTensorChunk* chunks = nullptr;
  int64_t tensor_count = 0, chunk_count = 0;
  double* partials = nullptr;  // [chunk_count]
  double* squares = nullptr;   // [n]
  double* total = nullptr;     // one value
};
void sum_of_squares(const SumOfSquaresArgs& args, Stream stream);

// x_t <- x_t * c for every tensor, c = clip_coefficient(*norm, max_norm) (base/grad_clip_math.h) with the
// norm read on the device (c rounded to f32, the multiply in f32 as the elementwise mul by a scalar does),
// applied only when the norm is finite and c < 1: clip_grad_norm_'s scaling without the host learning it.
struct ClipArgs {
  const GradTensor* tensors = nullptr;
  const MultiTensorChunk* chunks = nullptr;
  int64_t chunk_count = 0;
  const double* norm = nullptr;  // one value, on the device
  double max_norm = 0;
};
void clip_to_norm(const ClipArgs& args, Stream stream);

}  // namespace mgl::cuda

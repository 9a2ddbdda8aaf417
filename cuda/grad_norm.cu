// Sums of squares and clipping over a list of tensors, one block per chunk (cuda/multi_tensor.h):
//   pass 1: block b squares and adds the elements of chunk b in f64 (each thread its strided elements,
//           block_reduce folds the block) and writes partials[b];
//   pass 2: one block; thread t adds the partials of tensor t in chunk order, then thread 0 adds the
//           weighted squares in list order. No atomics: the same list gives the same bits.
// The clipping kernel reads the norm where pass 2 (and the caller's square root) left it.
#include <type_traits>

#include "base/grad_clip_math.h"
#include "cuda/common.cuh"
#include "cuda/grad_norm.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

struct Add {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// Elements [begin, end) of tensor t's chunk (block-wide work: every thread calls f on its elements).
template <class F>
__device__ void for_chunk_elements(const GradTensor& t, const MultiTensorChunk& chunk, F f) {
  const int64_t begin = chunk.piece * kMultiTensorChunk, end = min(t.count, begin + kMultiTensorChunk);
  if (t.dtype == DType::bf16) {
    auto* x = static_cast<__nv_bfloat16*>(t.data);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) f(x + i);
  } else {
    auto* x = static_cast<float*>(t.data);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) f(x + i);
  }
}

__global__ void chunk_squares(const GradTensor* __restrict__ tensors, const MultiTensorChunk* __restrict__ chunks,
                              double* __restrict__ partials) {
  const MultiTensorChunk chunk = chunks[blockIdx.x];
  double sum = 0;
  for_chunk_elements(tensors[chunk.tensor], chunk, [&](const auto* x) {
    const double v = to_float(*x);
    sum += v * v;
  });
  sum = block_reduce(sum, Add{});
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void fold_squares(const GradTensor* __restrict__ tensors, int64_t tensor_count,
                             const double* __restrict__ partials, double* __restrict__ squares,
                             double* __restrict__ total) {
  for (int64_t t = threadIdx.x; t < tensor_count; t += blockDim.x) {
    const GradTensor& x = tensors[t];
    const int64_t first = x.first_chunk, last = first + multi_tensor_chunks(x.count);
    double sum = 0;
    for (int64_t c = first; c < last; ++c) sum += partials[c];
    squares[t] = sum;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double sum = 0;
  for (int64_t t = 0; t < tensor_count; ++t) sum = __dadd_rn(sum, __dmul_rn(squares[t], tensors[t].weight));
  *total = sum;
}

__global__ void clip_kernel(const GradTensor* __restrict__ tensors, const MultiTensorChunk* __restrict__ chunks,
                            const double* __restrict__ norm, double max_norm) {
  const double coefficient = clip_coefficient(*norm, max_norm);
  if (!(coefficient < 1)) return;
  const float c = static_cast<float>(coefficient);
  const MultiTensorChunk chunk = chunks[blockIdx.x];
  for_chunk_elements(tensors[chunk.tensor], chunk, [&](auto* x) {
    using T = std::remove_pointer_t<decltype(x)>;
    *x = from_float<T>(to_float(*x) * c);
  });
}

}  // namespace

void sum_of_squares(const SumOfSquaresArgs& args, Stream stream) {
  if (args.chunk_count > 0) {
    chunk_squares<<<static_cast<unsigned>(args.chunk_count), kThreads, 0, stream>>>(args.tensors, args.chunks,
                                                                                     args.partials);
    MGL_CUDA_CHECK_LAUNCH();
  }
  fold_squares<<<1, kThreads, 0, stream>>>(args.tensors, args.tensor_count, args.partials, args.squares, args.total);
  MGL_CUDA_CHECK_LAUNCH();
}

void clip_to_norm(const ClipArgs& args, Stream stream) {
  if (args.chunk_count == 0) return;
  clip_kernel<<<static_cast<unsigned>(args.chunk_count), kThreads, 0, stream>>>(args.tensors, args.chunks, args.norm,
                                                                                args.max_norm);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

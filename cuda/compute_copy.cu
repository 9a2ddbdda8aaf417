// The multi-tensor f32 -> bf16 cast: block b takes chunk b of the list (cuda/multi_tensor.h), each thread
// reads 4 bytes and writes 2 per element with __float2bfloat16_rn, the rounding of copy_'s kernels.
#include "cuda/common.cuh"
#include "cuda/compute_copy.h"

namespace mgl::cuda {

namespace {

__global__ void cast_to_bf16_kernel(const CastSpan* __restrict__ spans, const MultiTensorChunk* __restrict__ chunks) {
  const MultiTensorChunk chunk = chunks[blockIdx.x];
  const CastSpan s = spans[chunk.tensor];
  auto* copy = reinterpret_cast<__nv_bfloat16*>(s.copy);
  const int64_t begin = chunk.piece * kMultiTensorChunk, end = min(s.count, begin + kMultiTensorChunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) copy[i] = __float2bfloat16_rn(s.source[i]);
}

}  // namespace

void cast_to_bf16(const CastMultiArgs& args, Stream stream) {
  if (args.chunk_count == 0) return;
  cast_to_bf16_kernel<<<static_cast<unsigned>(args.chunk_count), kThreads, 0, stream>>>(args.spans, args.chunks);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

// The fused AdamW update over a list of spans: block b takes chunk b of the list (cuda/multi_tensor.h);
// each thread reads p, g, m, v once and writes p, m, v once per element (7 x 4 bytes per element; the
// kernel is bound by memory bandwidth), and the bf16 compute copy of p where the span has one (2 bytes
// more, with __float2bfloat16_rn, the rounding of copy_'s kernels). kThreads (256) threads per block, one
// block per chunk.
#include "cuda/adamw.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

__global__ void adamw_kernel(const AdamWSpan* __restrict__ spans, const MultiTensorChunk* __restrict__ chunks,
                             const double* __restrict__ skip_unless_finite) {
  if (skip_unless_finite && !isfinite(*skip_unless_finite)) return;
  const MultiTensorChunk chunk = chunks[blockIdx.x];
  const AdamWSpan s = spans[chunk.tensor];
  auto* copy = reinterpret_cast<__nv_bfloat16*>(s.compute_copy);
  const int64_t begin = chunk.piece * kMultiTensorChunk, end = min(s.count, begin + kMultiTensorChunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float p = s.param[i], m = s.exp_avg[i], v = s.exp_avg_sq[i];
    adamw_update(p, s.grad[i], m, v, s.scalars);
    s.param[i] = p;
    s.exp_avg[i] = m;
    s.exp_avg_sq[i] = v;
    if (copy) copy[i] = __float2bfloat16_rn(p);
  }
}

}  // namespace

void adamw_step(const AdamWMultiArgs& args, Stream stream) {
  if (args.chunk_count == 0) return;
  adamw_kernel<<<static_cast<unsigned>(args.chunk_count), kThreads, 0, stream>>>(args.spans, args.chunks,
                                                                                  args.skip_unless_finite);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

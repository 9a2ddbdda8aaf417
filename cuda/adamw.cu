// The fused AdamW update: one thread per element reads p, g, m, v once and writes p, m, v once
// (7 x 4 bytes per element; the kernel is bound by memory bandwidth). Grid-stride loop; launch
// configuration: kThreads (256) threads per block, enough blocks to cover the tensor (capped).
#include "cuda/adamw.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ exp_avg,
                             float* __restrict__ exp_avg_sq, int64_t count, AdamWScalars scalars) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    float p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    adamw_update(p, grad[i], m, v, scalars);
    param[i] = p;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

}  // namespace

void adamw_step(const AdamWStepArgs& args, Stream stream) {
  if (args.count == 0) return;
  adamw_kernel<<<blocks_for(args.count), kThreads, 0, stream>>>(args.param, args.grad, args.exp_avg, args.exp_avg_sq,
                                                                args.count, args.scalars);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

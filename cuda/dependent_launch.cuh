#pragma once
// Programmatic dependent launch (Hopper, sm_90 and later), for chains of small kernels such as a
// decoding step.
//
// Normally a kernel starts only when the previous kernel in its stream has finished: between the two
// the GPU drains, and a short kernel spends as long starting (and waiting for its first loads) as it
// spends working. A kernel launched with `launch_overlapped` may instead start as soon as every block
// of the previous kernel has called `allow_next_kernel()`. Its blocks then run a prologue that only
// touches data no running kernel writes (weights, constants, state that the previous kernel leaves
// alone) and call `wait_for_previous_kernel()`, which returns once the previous kernel has completed
// and its writes are visible. So a matrix-vector product can load its weights while the kernel before
// it finishes.
//
// The rule every kernel of such a chain follows: wait first, then allow the next kernel
// (wait_for_previous_kernel(); allow_next_kernel();) and only then read or write activations. When a
// kernel starts, its predecessor has thus passed its own wait, so everything before the predecessor
// has completed: only the predecessor's own writes are still in flight, and the prologue must not
// read those. Both calls do nothing when the kernel was launched the ordinary way, or on GPUs older
// than sm_90.
#include <utility>

#include "cuda/common.cuh"

namespace mgl::cuda {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks the memory system to bring [begin, begin + bytes) into L2 without waiting for it: one request
// per 128-byte line, spread over `threads` threads of which the caller is number `thread` (by default
// the block's threads). For prologues: the data is on its way while the kernel waits for its
// predecessor.
__device__ __forceinline__ void prefetch_to_l2(const void* begin, int64_t bytes, int64_t thread = threadIdx.x,
                                               int64_t threads = blockDim.x) {
  const char* p = static_cast<const char*>(begin);
  for (int64_t offset = thread * 128; offset < bytes; offset += threads * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p + offset));
}

// kernel<<<grid, block, shared, stream>>>(args...), allowed to start before the previous kernel in
// the stream has finished (see above). Stream capture records it as a programmatic edge of the graph.
template <class... Params, class... Args>
void launch_overlapped(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, Stream stream,
                       Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  MGL_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace mgl::cuda

#pragma once
// Host-to-device copies the host does not wait for (CUDA builds only).
//
// cudaMemcpyAsync from pageable memory is not asynchronous: the driver stages the bytes through pinned
// memory of its own and may wait for the stream to do so, and the caller must keep the source alive until
// the copy has read it. An upload here copies the bytes on the host into a pinned block of a pool, enqueues
// the DMA from that block on the device's compute stream and records an event after it; the source may be
// freed at once. A block is reused once its event has passed (cudaEventQuery, which does not wait); while
// every block is still in flight the pool grows by one. Tensor uploads (copy_ from the CPU to a CUDA tensor,
// core/tensor.h) go through it, so a training step's token ids and the small index tables of its kernels
// reach the GPU without a host synchronisation (docs/training.md, "The step").
//
// Copies larger than kMaxPooledUpload (loading weights, once) are not pooled: pinning their size for the
// life of the process would cost more than the wait. They copy from pageable memory and wait.
#include <cstddef>

#include "core/device.h"

namespace mgl {

constexpr size_t kMaxPooledUpload = size_t{16} << 20;  // 16 MiB: a step's tables for 512K tokens

// Copies `bytes` bytes from host memory `source` to device memory `destination` on CUDA device `device`, in
// the order of its compute stream. Up to kMaxPooledUpload bytes it returns without waiting for the device;
// `source` may be reused as soon as it returns.
void upload(void* destination, const void* source, size_t bytes, const Device& device);

}  // namespace mgl

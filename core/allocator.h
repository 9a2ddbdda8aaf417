#pragma once
// Memory for tensors. CUDA memory comes from the runtime's stream-ordered pool (cudaMallocAsync /
// cudaFreeAsync on the device's compute stream, with the pool's release threshold raised so freed
// blocks stay cached for reuse): that pool already is a caching allocator, so we wrap it and count
// bytes rather than write our own. Host memory is 64-byte aligned.
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace mgl {

struct MemoryStats {
  int64_t current_bytes = 0;  // bytes held by live tensors
  int64_t peak_bytes = 0;     // high-water mark since start or the last reset_peak_memory()
};

void* allocate_bytes(const Device& device, size_t bytes);
void free_bytes(const Device& device, void* pointer, size_t bytes);
MemoryStats memory_stats(const Device& device);
void reset_peak_memory(const Device& device);

}  // namespace mgl

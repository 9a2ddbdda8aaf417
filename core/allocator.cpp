#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <mutex>
#include <vector>

#include "base/error.h"
#include "core/cuda_context.h"
#ifdef MGL_WITH_CUDA
#include "base/cuda_check.h"
#endif

namespace mgl {

namespace {

struct Counter {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};
  void add(int64_t bytes) {
    const int64_t now = current += bytes;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
};

constexpr int kMaxDevices = 64;
Counter& counter(const Device& device) {
  static Counter host;
  static Counter gpus[kMaxDevices];
  if (device.is_cpu()) return host;
  MGL_CHECK(device.index >= 0 && device.index < kMaxDevices, "memory statistics: no such device ", device.str(),
            " (indices run from 0 to ", kMaxDevices - 1, ")");
  return gpus[device.index];
}

#ifdef MGL_WITH_CUDA
// Raise the release threshold of each device's default pool once, so cudaFreeAsync keeps blocks.
void configure_pool(const Device& device) {
  static std::once_flag flags[kMaxDevices];
  std::call_once(flags[device.index], [&] {
    cudaMemPool_t pool;
    MGL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device.index));
    uint64_t threshold = UINT64_MAX;
    MGL_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  });
}
#endif

}  // namespace

void* allocate_bytes(const Device& device, size_t bytes) {
  if (bytes == 0) bytes = 1;  // distinct non-null pointers for empty tensors
  void* pointer = nullptr;
  if (device.is_cpu()) {
    pointer = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    MGL_CHECK(pointer, "out of host memory allocating ", bytes, " bytes");
  } else {
#ifdef MGL_WITH_CUDA
    require_cuda(device, "allocate");
    DeviceGuard guard(device);
    configure_pool(device);
    const cudaError_t status = cudaMallocAsync(&pointer, bytes, compute_stream(device));
    if (status != cudaSuccess) {
      cudaGetLastError();
      MGL_FAIL("out of memory on ", device.str(), " allocating ", bytes, " bytes (",
               counter(device).current.load(), " bytes in use): ", cudaGetErrorString(status));
    }
#else
    require_cuda(device, "allocate");
#endif
  }
  counter(device).add(static_cast<int64_t>(bytes));
  return pointer;
}

void free_bytes(const Device& device, void* pointer, size_t bytes) {
  if (!pointer) return;
  if (bytes == 0) bytes = 1;
  if (device.is_cpu()) {
    std::free(pointer);
  } else {
#ifdef MGL_WITH_CUDA
    DeviceGuard guard(device);
    cudaFreeAsync(pointer, compute_stream(device));  // destructors do not throw
#endif
  }
  counter(device).current -= static_cast<int64_t>(bytes);
}

MemoryStats memory_stats(const Device& device) {
  return {counter(device).current.load(), counter(device).peak.load()};
}

void reset_peak_memory(const Device& device) { counter(device).peak = counter(device).current.load(); }

}  // namespace mgl

#include "core/host_upload.h"

#ifdef MGL_WITH_CUDA

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "base/cuda_check.h"
#include "core/cuda_context.h"

namespace mgl {

namespace {

// The pinned blocks of one device. Blocks live as long as the process (the driver releases pinned
// memory at exit); how many there are is the most uploads ever in flight at once, a handful a step.
class UploadPool {
 public:
  explicit UploadPool(const Device& device) : device_(device) {}

  void upload(void* destination, const void* source, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard guard(device_);
    const Stream stream = compute_stream(device_);
    Block& block = free_block(bytes);
    std::memcpy(block.data, source, bytes);
    MGL_CUDA_CHECK(cudaMemcpyAsync(destination, block.data, bytes, cudaMemcpyHostToDevice, stream));
    MGL_CUDA_CHECK(cudaEventRecord(block.copied, stream));
  }

 private:
  struct Block {
    void* data = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;  // recorded after the block's latest copy; never recorded counts as passed
  };

  // The smallest block of at least `bytes` whose last copy is done, else a new one (a power of two of at
  // least 64 KiB, so that the sizes of a step's uploads settle on a few blocks).
  Block& free_block(size_t bytes) {
    Block* best = nullptr;
    for (const std::unique_ptr<Block>& b : blocks_) {
      if (b->bytes < bytes || (best && best->bytes <= b->bytes)) continue;
      const cudaError_t status = cudaEventQuery(b->copied);
      if (status == cudaErrorNotReady) continue;
      MGL_CUDA_CHECK(status);
      best = b.get();
    }
    if (best) return *best;
    auto block = std::make_unique<Block>();
    block->bytes = size_t{64} << 10;
    while (block->bytes < bytes) block->bytes *= 2;
    MGL_CUDA_CHECK(cudaHostAlloc(&block->data, block->bytes, cudaHostAllocDefault));
    MGL_CUDA_CHECK(cudaEventCreateWithFlags(&block->copied, cudaEventDisableTiming));
    blocks_.push_back(std::move(block));
    return *blocks_.back();
  }

  Device device_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Block>> blocks_;
};

UploadPool& pool_of(const Device& device) {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<UploadPool>> pools;
  std::lock_guard<std::mutex> lock(mutex);
  if (pools.empty()) pools.resize(cuda_device_count());
  std::unique_ptr<UploadPool>& pool = pools.at(device.index);
  if (!pool) pool = std::make_unique<UploadPool>(device);
  return *pool;
}

}  // namespace

void upload(void* destination, const void* source, size_t bytes, const Device& device) {
  require_cuda(device, "upload");
  if (bytes <= kMaxPooledUpload) return pool_of(device).upload(destination, source, bytes);
  DeviceGuard guard(device);
  MGL_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyHostToDevice, compute_stream(device)));
  synchronize(device);  // the source must outlive the copy
}

}  // namespace mgl

#endif

#include "core/cuda_context.h"

#include <mutex>
#include <vector>

#include "base/error.h"

#ifdef MGL_WITH_CUDA
#include "base/cuda_check.h"
#endif

namespace mgl {

#ifdef MGL_WITH_CUDA

namespace {
struct Probe {
  int count = 0;
  std::string reason;
};
const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    const cudaError_t status = cudaGetDeviceCount(&p.count);
    if (status != cudaSuccess) {
      p.count = 0;
      p.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(status);
      cudaGetLastError();  // clear the sticky error so later calls are not confused by it
    } else if (p.count == 0) {
      p.reason = "no CUDA device found";
    }
    return p;
  }();
  return result;
}
}  // namespace

bool cuda_built() { return true; }
int cuda_device_count() { return probe().count; }
bool cuda_available() { return probe().count > 0; }
std::string cuda_unavailable_reason() { return probe().reason; }

Stream compute_stream(const Device& device) {
  require_cuda(device, "compute_stream");
  static std::mutex mutex;
  static std::vector<cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mutex);
  if (streams.empty()) streams.assign(cuda_device_count(), nullptr);
  cudaStream_t& stream = streams[device.index];
  if (!stream) {
    DeviceGuard guard(device);
    MGL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  return stream;
}

void synchronize(const Device& device) {
  if (!device.is_cuda()) return;
  MGL_CUDA_CHECK(cudaStreamSynchronize(compute_stream(device)));
}

DeviceGuard::DeviceGuard(const Device& device) {
  if (!device.is_cuda()) return;
  MGL_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device.index) MGL_CUDA_CHECK(cudaSetDevice(device.index));
}
DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

#else  // built without CUDA

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
bool cuda_available() { return false; }
std::string cuda_unavailable_reason() { return "megalodon.cpp was built without CUDA (MGL_WITH_CUDA=OFF)"; }
Stream compute_stream(const Device& device) {
  require_cuda(device, "compute_stream");
  return nullptr;
}
void synchronize(const Device&) {}
DeviceGuard::DeviceGuard(const Device&) {}
DeviceGuard::~DeviceGuard() {}

#endif

void require_cuda(const Device& device, const char* op) {
  if (!device.is_cuda()) return;
  MGL_CHECK(cuda_available(), op, ": cannot use ", device.str(), ": ", cuda_unavailable_reason());
  MGL_CHECK(device.index >= 0 && device.index < cuda_device_count(), op, ": ", device.str(),
            " does not exist (", cuda_device_count(), " CUDA device(s) visible)");
}

}  // namespace mgl

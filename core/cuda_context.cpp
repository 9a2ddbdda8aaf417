#include "core/cuda_context.h"

#include <atomic>
#include <mutex>
#include <vector>

#include "base/error.h"

#ifdef MGL_WITH_CUDA
#include "base/cuda_check.h"
#endif

namespace mgl {

namespace {
std::atomic<int64_t> g_host_synchronizations{0};
}  // namespace

int64_t host_synchronizations() { return g_host_synchronizations.load(); }

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
  ++g_host_synchronizations;
  MGL_CUDA_CHECK(cudaStreamSynchronize(compute_stream(device)));
}

namespace {
void* record_timing_event(const Device& device) {
  DeviceGuard guard(device);
  cudaEvent_t event = nullptr;
  MGL_CUDA_CHECK(cudaEventCreate(&event));
  MGL_CUDA_CHECK(cudaEventRecord(event, compute_stream(device)));
  return event;
}
void destroy_timing_event(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }
double event_ms(void* start, void* end) {
  float ms = 0;
  ++g_host_synchronizations;
  MGL_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  MGL_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}
}  // namespace

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
namespace {
// No CUDA device exists in this build (require_cuda refuses first), so no event is ever made.
void* record_timing_event(const Device& device) {
  require_cuda(device, "DeviceTimePoint");
  return nullptr;
}
void destroy_timing_event(void*) {}
double event_ms(void*, void*) { return 0; }
}  // namespace

DeviceGuard::DeviceGuard(const Device&) {}
DeviceGuard::~DeviceGuard() {}

#endif

DeviceTimePoint::DeviceTimePoint(const Device& device) : device_(device), time_(std::chrono::steady_clock::now()) {
  if (device.is_cuda()) event_ = record_timing_event(device);
}
DeviceTimePoint::~DeviceTimePoint() {
  if (event_) destroy_timing_event(event_);
}
DeviceTimePoint::DeviceTimePoint(DeviceTimePoint&& other) noexcept
    : device_(other.device_), event_(other.event_), time_(other.time_) {
  other.event_ = nullptr;
}

double DeviceTimePoint::ms_since(const DeviceTimePoint& start) const {
  MGL_CHECK(device_ == start.device_, "DeviceTimePoint: ", start.device_.str(), " and ", device_.str(),
            " have no common clock");
  if (!event_) return std::chrono::duration<double, std::milli>(time_ - start.time_).count();
  return event_ms(start.event_, event_);
}

void require_cuda(const Device& device, const char* op) {
  if (!device.is_cuda()) return;
  MGL_CHECK(cuda_available(), op, ": cannot use ", device.str(), ": ", cuda_unavailable_reason());
  MGL_CHECK(device.index >= 0 && device.index < cuda_device_count(), op, ": ", device.str(),
            " does not exist (", cuda_device_count(), " CUDA device(s) visible)");
}

}  // namespace mgl

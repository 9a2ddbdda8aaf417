#pragma once
// The CUDA runtime as the rest of the engine sees it: is a GPU there, which stream does work go
// to, which device is current. Compiles (and answers "no GPU") when the engine is built without
// CUDA, so no other file needs #ifdefs to ask.
#include <chrono>
#include <cstdint>
#include <string>

#include "core/device.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*; declared here so headers need no CUDA include

namespace mgl {

using Stream = CUstream_st*;

bool cuda_built();                    // compiled with the CUDA backend
bool cuda_available();                // built with CUDA and at least one device answers
int cuda_device_count();              // 0 when unavailable
std::string cuda_unavailable_reason();  // why cuda_available() is false (for skip messages)
void require_cuda(const Device& device, const char* op);  // throws a clear error if unusable

// One compute stream per device. Ops enqueue work on it; nothing synchronises unless a value
// must reach the host.
Stream compute_stream(const Device& device);
void synchronize(const Device& device);

// How many times so far the host has waited for a CUDA device: every synchronize() of one (reads to
// the host included) and every DeviceTimePoint::ms_since. A test reads it around a span of work to prove
// that the span never waits (a training step that logs nothing, apps/lib/training_step.h).
int64_t host_synchronizations();

// A point in a device's work, to time what the device did between two of them (the benchmarks): on CUDA
// an event recorded on the compute stream, so marking does not wait for the GPU and the time between
// two points is the GPU's own; on the CPU the steady clock at the call (CPU work is done when its call
// returns).
class DeviceTimePoint {
 public:
  explicit DeviceTimePoint(const Device& device);
  ~DeviceTimePoint();
  DeviceTimePoint(DeviceTimePoint&& other) noexcept;
  DeviceTimePoint& operator=(DeviceTimePoint&&) = delete;
  DeviceTimePoint(const DeviceTimePoint&) = delete;
  DeviceTimePoint& operator=(const DeviceTimePoint&) = delete;

  // Milliseconds from `start` (an earlier point on the same device) to this one; on CUDA it waits until
  // the GPU has passed this point.
  double ms_since(const DeviceTimePoint& start) const;

 private:
  Device device_;
  void* event_ = nullptr;  // cudaEvent_t on CUDA
  std::chrono::steady_clock::time_point time_;
};

// Makes `device` current for the guard's lifetime (no-op for CPU).
class DeviceGuard {
 public:
  explicit DeviceGuard(const Device& device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace mgl

// Wraps a call into cuda/: compiled only in CUDA builds. In a CPU-only build no CUDA tensor can
// exist (allocation refuses first), so reaching this branch is a bug and reports itself as one.
#ifdef MGL_WITH_CUDA
#define MGL_ON_CUDA(...) __VA_ARGS__
#else
#define MGL_ON_CUDA(...) MGL_FAIL("internal error: CUDA code path reached in a build without CUDA")
#endif

#pragma once
// CUPTI's activity API (the CUDA toolkit's profiling interface, which Nsight Systems builds on) reduced to
// what the kernel profiler needs (apps/lib/kernel_profiler.h): while recording, every kernel, memory copy
// and memset the GPU runs is handed over as a plain record with its start and end on the GPU's clock.
// Plain C++ like every cuda/*.h; only kernel_activity.cu sees CUPTI.
//
// How records travel (as in CUPTI's sample activity_trace_async): CUPTI asks for empty buffers, fills
// them from its own thread and returns each full one; stop_activity_recording() makes it return the rest.
// A record CUPTI had no buffer for is dropped; the count of those is returned, never silently lost.
#include <cstdint>
#include <functional>

namespace mgl::cuda {

enum class ActivityKind { kernel, memcpy, memset };

struct Activity {
  ActivityKind kind = ActivityKind::kernel;
  // A kernel's name as compiled (mangled, for C++ kernels); a copy's direction ("HtoD", "DtoH", "DtoD",
  // "HtoH", "PtoP" or "other"); "memset". Valid only during the call to the sink.
  const char* name = "";
  uint64_t start_ns = 0;  // 0 when CUPTI could not time the activity
  uint64_t end_ns = 0;
};

// Receives each record; calls never overlap (they may come from CUPTI's thread).
using ActivitySink = std::function<void(const Activity&)>;

// Starts recording kernels (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, which keeps kernels concurrent),
// copies and memsets of every device into `sink`. One recording at a time in a process.
void start_activity_recording(ActivitySink sink);
// Stops recording and delivers every remaining record to the sink before returning (synchronise the
// device first, or records of kernels still running are incomplete). Returns the number of records
// dropped since start_activity_recording.
uint64_t stop_activity_recording();

}  // namespace mgl::cuda

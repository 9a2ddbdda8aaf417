// CUPTI's activity records as plain Activity records (see kernel_activity.h).
#include "cuda/kernel_activity.h"

#include <cupti.h>

#include <cstdlib>
#include <mutex>

#include "base/error.h"

#define MGL_CUPTI_CHECK(call) MGL_CHECK_STATUS(call, CUPTI_SUCCESS, "CUPTI", cupti_error_string(mgl_status_))

namespace mgl::cuda {

namespace {

const char* cupti_error_string(CUptiResult status) {
  const char* text = nullptr;
  return cuptiGetResultString(status, &text) == CUPTI_SUCCESS && text ? text : "unknown CUPTI error";
}

// The kinds recorded. CONCURRENT_KERNEL rather than KERNEL: the latter serialises every kernel.
constexpr CUpti_ActivityKind kRecordedKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                                 CUPTI_ACTIVITY_KIND_MEMSET};

// CUPTI's recommended buffer size is 1-10 MB; a kernel record is ~200 bytes, so one buffer holds ~40K of
// them (a training step launches a few thousand kernels).
constexpr size_t kBufferBytes = 8 << 20;
constexpr size_t kRecordAlignment = 8;  // ACTIVITY_RECORD_ALIGNMENT

// CUPTI's callbacks are plain functions: the recording's state is process-wide, and the mutex keeps
// deliveries from CUPTI's thread and from stop_activity_recording's flush apart.
std::mutex g_mutex;
ActivitySink g_sink;
uint64_t g_dropped = 0;
bool g_recording = false;

const char* copy_direction(uint8_t copy_kind) {
  switch (copy_kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "HtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "PtoP";
    default: return "other";
  }
}

void CUPTIAPI request_buffer(uint8_t** buffer, size_t* size, size_t* max_records) {
  // A null buffer declines the request: CUPTI then drops records, and counts them.
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kRecordAlignment, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer, size_t, size_t valid_bytes) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    CUpti_Activity* record = nullptr;
    while (valid_bytes > 0 && cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
      Activity a;
      switch (record->kind) {
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
          const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
          a = {ActivityKind::kernel, k->name ? k->name : "(unnamed kernel)", k->start, k->end};
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMCPY: {
          const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
          a = {ActivityKind::memcpy, copy_direction(c->copyKind), c->start, c->end};
          break;
        }
        case CUPTI_ACTIVITY_KIND_MEMSET: {
          const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
          a = {ActivityKind::memset, "memset", m->start, m->end};
          break;
        }
        default: continue;
      }
      if (g_sink) g_sink(a);
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(context, stream, &dropped) == CUPTI_SUCCESS) g_dropped += dropped;
  }
  std::free(buffer);
}

}  // namespace

void start_activity_recording(ActivitySink sink) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    MGL_CHECK(!g_recording, "kernel profiler: a recording is already running in this process");
    g_sink = std::move(sink);
    g_dropped = 0;
    g_recording = true;
  }
  // CUPTI is called without the mutex held: a flush delivers buffers on the calling thread.
  try {
    static const bool registered = [] {
      MGL_CUPTI_CHECK(cuptiActivityRegisterCallbacks(request_buffer, buffer_completed));
      return true;
    }();
    (void)registered;
    for (CUpti_ActivityKind kind : kRecordedKinds) MGL_CUPTI_CHECK(cuptiActivityEnable(kind));
  } catch (...) {
    for (CUpti_ActivityKind kind : kRecordedKinds) cuptiActivityDisable(kind);
    std::lock_guard<std::mutex> lock(g_mutex);
    g_sink = nullptr;
    g_recording = false;
    throw;
  }
}

uint64_t stop_activity_recording() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    MGL_CHECK(g_recording, "kernel profiler: no recording to stop");
  }
  for (CUpti_ActivityKind kind : kRecordedKinds) MGL_CUPTI_CHECK(cuptiActivityDisable(kind));
  // Forced: also the buffers that are not full (after a device synchronisation every record is complete).
  MGL_CUPTI_CHECK(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
  std::lock_guard<std::mutex> lock(g_mutex);
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS) g_dropped += dropped;
  g_sink = nullptr;
  g_recording = false;
  return g_dropped;
}

}  // namespace mgl::cuda

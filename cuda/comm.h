#pragma once
// What dist/ needs from the CUDA runtime and NCCL, on raw pointers and streams: NCCL communicators
// and their collectives, a communication stream ordered against the compute stream by events, and
// pinned host buffers for staging CUDA tensors through MPI. No Tensor here (dist/ wraps these).
#include <cstddef>
#include <string>

#include "base/layout.h"

struct CUevent_st;

namespace mgl::cuda {

using Event = CUevent_st*;

// ---- streams, events, pinned memory -------------------------------------------------------------
Stream create_stream();                       // non-blocking with respect to the legacy stream
void destroy_stream(Stream stream);
Event create_event();                         // timing disabled: only ordering
void destroy_event(Event event);
void record_event(Event event, Stream stream);
void stream_wait_event(Stream stream, Event event);  // later work on `stream` waits for `event`
bool event_done(Event event);                 // non-blocking query
void synchronize_stream(Stream stream);
void* pinned_alloc(size_t bytes);
void pinned_free(void* pointer);
// Asynchronous copies between device memory and pinned host memory, in stream order.
void copy_to_host_async(void* host, const void* device, size_t bytes, Stream stream);
void copy_to_device_async(void* device, const void* host, size_t bytes, Stream stream);

// ---- NCCL ------------------------------------------------------------------------------------------
constexpr int kNcclUniqueIdBytes = 128;
struct NcclUniqueId {
  char bytes[kNcclUniqueIdBytes];
};
enum class CommReduce { sum, max };

NcclUniqueId nccl_unique_id();  // created by one rank, sent to the others over MPI
// An NCCL communicator (ncclComm_t) as an opaque handle; the current device must be the rank's GPU.
void* nccl_init(const NcclUniqueId& id, int ranks, int rank);
void nccl_destroy(void* comm);
void nccl_abort(void* comm);  // what the watchdog calls: pending operations end, the comm is unusable
std::string nccl_async_error(void* comm);  // empty while the communicator is healthy
std::string nccl_version();

// Collectives on `stream`, counts in elements of `dtype` (f32, f64, bf16, i32, i64).
void nccl_all_reduce(const void* in, void* out, size_t count, DType dtype, CommReduce op, void* comm, Stream stream);
void nccl_all_gather(const void* in, void* out, size_t count_per_rank, DType dtype, void* comm, Stream stream);
void nccl_reduce_scatter(const void* in, void* out, size_t count_per_rank, DType dtype, CommReduce op, void* comm,
                         Stream stream);
void nccl_broadcast(void* buffer, size_t count, DType dtype, int root, void* comm, Stream stream);
void nccl_send(const void* buffer, size_t count, DType dtype, int peer, void* comm, Stream stream);
void nccl_recv(void* buffer, size_t count, DType dtype, int peer, void* comm, Stream stream);

}  // namespace mgl::cuda

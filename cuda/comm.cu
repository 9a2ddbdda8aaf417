// Thin, checked wrappers over the CUDA runtime and NCCL for dist/ (see comm.h).
#include "cuda/comm.h"

#include <nccl.h>

#include <cstring>

#include "base/cuda_check.h"

#define MGL_NCCL_CHECK(call)                                                                \
  MGL_CHECK_STATUS(call, ncclSuccess, "NCCL", ncclGetErrorString(mgl_status_), " (", ncclGetLastError(nullptr), ")")

namespace mgl::cuda {

namespace {

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    default: MGL_FAIL("NCCL: no NCCL type for dtype ", dtype_name(dtype));
  }
}

ncclRedOp_t nccl_op(CommReduce op) { return op == CommReduce::sum ? ncclSum : ncclMax; }
ncclComm_t as_comm(void* comm) { return static_cast<ncclComm_t>(comm); }

}  // namespace

Stream create_stream() {
  cudaStream_t stream = nullptr;
  MGL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}
void destroy_stream(Stream stream) { cudaStreamDestroy(stream); }
Event create_event() {
  cudaEvent_t event = nullptr;
  MGL_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}
void destroy_event(Event event) { cudaEventDestroy(event); }
void record_event(Event event, Stream stream) { MGL_CUDA_CHECK(cudaEventRecord(event, stream)); }
void stream_wait_event(Stream stream, Event event) { MGL_CUDA_CHECK(cudaStreamWaitEvent(stream, event, 0)); }
bool event_done(Event event) {
  const cudaError_t status = cudaEventQuery(event);
  if (status == cudaErrorNotReady) return false;
  MGL_CUDA_CHECK(status);
  return true;
}
void synchronize_stream(Stream stream) { MGL_CUDA_CHECK(cudaStreamSynchronize(stream)); }
void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  MGL_CUDA_CHECK(cudaMallocHost(&p, bytes == 0 ? 1 : bytes));
  return p;
}
void pinned_free(void* pointer) { cudaFreeHost(pointer); }
void copy_to_host_async(void* host, const void* device, size_t bytes, Stream stream) {
  MGL_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
}
void copy_to_device_async(void* device, const void* host, size_t bytes, Stream stream) {
  MGL_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream));
}

NcclUniqueId nccl_unique_id() {
  static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes, "NCCL's unique id changed size");
  ncclUniqueId id;
  MGL_NCCL_CHECK(ncclGetUniqueId(&id));
  NcclUniqueId out;
  std::memcpy(out.bytes, id.internal, kNcclUniqueIdBytes);
  return out;
}

void* nccl_init(const NcclUniqueId& id, int ranks, int rank) {
  ncclUniqueId nid;
  std::memcpy(nid.internal, id.bytes, kNcclUniqueIdBytes);
  ncclComm_t comm = nullptr;
  // Non-blocking initialisation would let the watchdog bound it too; blocking is enough here: every
  // rank reaches this point together (right after the MPI broadcast of the id).
  MGL_NCCL_CHECK(ncclCommInitRank(&comm, ranks, nid, rank));
  return comm;
}
void nccl_destroy(void* comm) { ncclCommDestroy(as_comm(comm)); }
void nccl_abort(void* comm) { ncclCommAbort(as_comm(comm)); }
std::string nccl_async_error(void* comm) {
  ncclResult_t async = ncclSuccess;
  if (ncclCommGetAsyncError(as_comm(comm), &async) != ncclSuccess) return "ncclCommGetAsyncError failed";
  return async == ncclSuccess || async == ncclInProgress ? std::string() : std::string(ncclGetErrorString(async));
}
std::string nccl_version() {
  int v = 0;
  ncclGetVersion(&v);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

void nccl_all_reduce(const void* in, void* out, size_t count, DType dtype, CommReduce op, void* comm, Stream stream) {
  MGL_NCCL_CHECK(ncclAllReduce(in, out, count, nccl_type(dtype), nccl_op(op), as_comm(comm), stream));
}
void nccl_all_gather(const void* in, void* out, size_t count_per_rank, DType dtype, void* comm, Stream stream) {
  MGL_NCCL_CHECK(ncclAllGather(in, out, count_per_rank, nccl_type(dtype), as_comm(comm), stream));
}
void nccl_reduce_scatter(const void* in, void* out, size_t count_per_rank, DType dtype, CommReduce op, void* comm,
                         Stream stream) {
  MGL_NCCL_CHECK(ncclReduceScatter(in, out, count_per_rank, nccl_type(dtype), nccl_op(op), as_comm(comm), stream));
}
void nccl_broadcast(void* buffer, size_t count, DType dtype, int root, void* comm, Stream stream) {
  MGL_NCCL_CHECK(ncclBroadcast(buffer, buffer, count, nccl_type(dtype), root, as_comm(comm), stream));
}
void nccl_send(const void* buffer, size_t count, DType dtype, int peer, void* comm, Stream stream) {
  MGL_NCCL_CHECK(ncclSend(buffer, count, nccl_type(dtype), peer, as_comm(comm), stream));
}
void nccl_recv(void* buffer, size_t count, DType dtype, int peer, void* comm, Stream stream) {
  MGL_NCCL_CHECK(ncclRecv(buffer, count, nccl_type(dtype), peer, as_comm(comm), stream));
}

}  // namespace mgl::cuda

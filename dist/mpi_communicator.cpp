#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <climits>

#include "core/cuda_context.h"
#include "cuda/comm.h"
#include "dist/mpi_check.h"

namespace mgl::dist {

namespace {

MPI_Comm as_comm(const MpiComm& c) { return reinterpret_cast<MPI_Comm>(c.handle()); }

// bf16 has no MPI type: it travels as 16-bit words and is summed by a user operation in f32.
void bf16_sum(void* in, void* inout, int* length, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *length; ++i) b[i] = bf16(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}
void bf16_max(void* in, void* inout, int* length, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *length; ++i)
    if (static_cast<float>(a[i]) > static_cast<float>(b[i])) b[i] = a[i];
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    default: MGL_FAIL("MPI: no MPI type for dtype ", dtype_name(dtype));
  }
}

MPI_Op mpi_op(ReduceOp op, DType dtype) {
  if (dtype == DType::bf16) {
    static MPI_Op sum = MPI_OP_NULL, max = MPI_OP_NULL;
    if (sum == MPI_OP_NULL) {
      MGL_MPI_CHECK(MPI_Op_create(&bf16_sum, 1, &sum));
      MGL_MPI_CHECK(MPI_Op_create(&bf16_max, 1, &max));
    }
    return op == ReduceOp::sum ? sum : max;
  }
  return op == ReduceOp::sum ? MPI_SUM : MPI_MAX;
}

int checked_count(int64_t count, const char* op) {
  MGL_CHECK(count >= 0 && count <= INT_MAX, "MPI ", op, ": ", count, " elements exceed MPI's int count");
  return static_cast<int>(count);
}

// Pending MPI requests; wait() polls them under the fault monitor, then runs `finish`.
class MpiWork final : public Work {
 public:
  MpiWork(std::string what, std::shared_ptr<const FaultMonitor> monitor, MPI_Request request,
          std::vector<Tensor> keep, std::function<void()> finish)
      : what_(std::move(what)), monitor_(std::move(monitor)), request_(request), keep_(std::move(keep)),
        finish_(std::move(finish)) {}
  ~MpiWork() override {
    if (!done_) {
      try {
        wait();
      } catch (...) {
      }
    }
  }
  void wait() override {
    if (done_) return;
    monitor_->wait_until(
        [this] {
          int flag = 0;
          MGL_MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE));
          return flag != 0;
        },
        what_);
    done_ = true;
    if (finish_) finish_();
    keep_.clear();
  }

 private:
  std::string what_;
  std::shared_ptr<const FaultMonitor> monitor_;
  MPI_Request request_;
  std::vector<Tensor> keep_;
  std::function<void()> finish_;
  bool done_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(std::string name, MpiComm comm, std::shared_ptr<const FaultMonitor> monitor)
    : Communicator(std::move(name), comm.rank(), comm.size()), comm_(std::move(comm)), monitor_(std::move(monitor)) {}

void MpiCommunicator::require_cpu(const char* op, const Tensor& t) const {
  check_tensor(op, t);
  MGL_CHECK(t.is_cpu(), name(), " group ", op, ": the MPI backend takes CPU tensors, got ", t.describe(),
            " (CUDA tensors go through NCCL or the staged MPI backend)");
}

// The Work of a non-blocking MPI call that returned `status` with `request`.
WorkHandle MpiCommunicator::started(const std::string& what, int status, void* request, HostOp extra) const {
  MGL_CHECK(status == MPI_SUCCESS, "MPI error in ", name(), " ", what, ": ", mpi_error_string(status));
  return std::make_unique<MpiWork>(name() + " " + what, monitor_, *static_cast<MPI_Request*>(request),
                                   std::move(extra.keep), std::move(extra.finish));
}

WorkHandle MpiCommunicator::host_all_reduce(void* data, int64_t count, DType dtype, ReduceOp op, HostOp extra) {
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Iallreduce(MPI_IN_PLACE, data, checked_count(count, "all_reduce"), mpi_type(dtype),
                                    mpi_op(op, dtype), as_comm(comm_), &r);
  return started("all_reduce", status, &r, std::move(extra));
}
WorkHandle MpiCommunicator::host_all_gather(const void* in, void* out, int64_t count, DType dtype, HostOp extra) {
  const int n = checked_count(count, "all_gather");
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Iallgather(in, n, mpi_type(dtype), out, n, mpi_type(dtype), as_comm(comm_), &r);
  return started("all_gather", status, &r, std::move(extra));
}
WorkHandle MpiCommunicator::host_reduce_scatter(const void* in, void* out, int64_t count, DType dtype, HostOp extra) {
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Ireduce_scatter_block(in, out, checked_count(count, "reduce_scatter"), mpi_type(dtype),
                                               mpi_op(ReduceOp::sum, dtype), as_comm(comm_), &r);
  return started("reduce_scatter", status, &r, std::move(extra));
}
WorkHandle MpiCommunicator::host_broadcast(void* data, int64_t count, DType dtype, int root, HostOp extra) {
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Ibcast(data, checked_count(count, "broadcast"), mpi_type(dtype), root, as_comm(comm_), &r);
  return started("broadcast", status, &r, std::move(extra));
}
WorkHandle MpiCommunicator::host_send(const void* data, int64_t count, DType dtype, int peer, int tag, HostOp extra) {
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Isend(data, checked_count(count, "send"), mpi_type(dtype), peer, tag, as_comm(comm_), &r);
  return started("send to rank " + std::to_string(peer), status, &r, std::move(extra));
}
WorkHandle MpiCommunicator::host_recv(void* data, int64_t count, DType dtype, int peer, int tag, HostOp extra) {
  MPI_Request r = MPI_REQUEST_NULL;
  const int status = MPI_Irecv(data, checked_count(count, "recv"), mpi_type(dtype), peer, tag, as_comm(comm_), &r);
  return started("recv from rank " + std::to_string(peer), status, &r, std::move(extra));
}

WorkHandle MpiCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  require_cpu("all_reduce", t);
  return host_all_reduce(t.raw_data(), t.numel(), t.dtype(), op, {{t}, nullptr});
}
WorkHandle MpiCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  require_cpu("all_gather", in);
  check_all_gather(in, out);
  return host_all_gather(in.raw_data(), out.raw_data(), in.numel(), in.dtype(), {{in, out}, nullptr});
}
WorkHandle MpiCommunicator::reduce_scatter(const Tensor& in, const Tensor& out) {
  require_cpu("reduce_scatter", in);
  check_reduce_scatter(in, out);
  return host_reduce_scatter(in.raw_data(), out.raw_data(), out.numel(), in.dtype(), {{in, out}, nullptr});
}
WorkHandle MpiCommunicator::broadcast(const Tensor& t, int root) {
  require_cpu("broadcast", t);
  return host_broadcast(t.raw_data(), t.numel(), t.dtype(), root, {{t}, nullptr});
}
WorkHandle MpiCommunicator::send(const Tensor& t, int peer, int tag) {
  require_cpu("send", t);
  check_peer("send", peer);
  return host_send(t.raw_data(), t.numel(), t.dtype(), peer, tag, {{t}, nullptr});
}
WorkHandle MpiCommunicator::recv(const Tensor& t, int peer, int tag) {
  require_cpu("recv", t);
  check_peer("recv", peer);
  return host_recv(t.raw_data(), t.numel(), t.dtype(), peer, tag, {{t}, nullptr});
}
void MpiCommunicator::barrier() {
  MPI_Request request = MPI_REQUEST_NULL;
  MGL_MPI_CHECK(MPI_Ibarrier(as_comm(comm_), &request));
  MpiWork(name() + " barrier", monitor_, request, {}, nullptr).wait();
}

// ---- pinned staging ---------------------------------------------------------------------------------

PinnedPool::~PinnedPool() {
  for (const Block& b : blocks_) MGL_ON_CUDA(cuda::pinned_free(b.data));
}

void* PinnedPool::take(size_t bytes) {
  for (Block& b : blocks_)
    if (!b.in_use && b.bytes >= bytes) {
      b.in_use = true;
      return b.data;
    }
  void* data = nullptr;
  MGL_ON_CUDA(data = cuda::pinned_alloc(bytes));
  blocks_.push_back({data, bytes, true});
  return data;
}

void PinnedPool::give_back(void* buffer) {
  for (Block& b : blocks_)
    if (b.data == buffer) b.in_use = false;
}

StagedCommunicator::StagedCommunicator(std::string name, MpiComm comm, std::shared_ptr<const FaultMonitor> monitor)
    : MpiCommunicator(std::move(name), std::move(comm), std::move(monitor)) {}

namespace {
void require_cuda_tensor(const Communicator& c, const char* op, const Tensor& t) {
  MGL_CHECK(t.defined() && t.is_contiguous() && t.is_cuda(), c.name(), " group ", op,
            ": the staged MPI backend takes contiguous CUDA tensors, got ", t.defined() ? t.describe() : "undefined");
}
size_t bytes_of(const Tensor& t) { return static_cast<size_t>(t.numel()) * t.element_size(); }
}  // namespace

void* StagedCommunicator::stage_in(const Tensor& t) {
  void* host = pool_->take(bytes_of(t));
  DeviceGuard guard(t.device());
  MGL_ON_CUDA(cuda::copy_to_host_async(host, t.raw_data(), bytes_of(t), compute_stream(t.device())));
  synchronize(t.device());  // the host sends what the compute stream produced
  return host;
}

MpiCommunicator::HostOp StagedCommunicator::stage_out(const Tensor& t, void* host, std::vector<void*> buffers) {
  std::shared_ptr<PinnedPool> pool = pool_;
  return {{t}, [t, host, buffers = std::move(buffers), pool] {
            if (t.defined() && host) {
              DeviceGuard guard(t.device());
              MGL_ON_CUDA(cuda::copy_to_device_async(t.raw_data(), host, bytes_of(t), compute_stream(t.device())));
              synchronize(t.device());  // the buffer is reused as soon as it is given back
            }
            for (void* b : buffers) pool->give_back(b);
          }};
}

WorkHandle StagedCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  require_cuda_tensor(*this, "all_reduce", t);
  void* host = stage_in(t);
  return host_all_reduce(host, t.numel(), t.dtype(), op, stage_out(t, host, {host}));
}
WorkHandle StagedCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  require_cuda_tensor(*this, "all_gather", in);
  check_all_gather(in, out);
  void* host_in = stage_in(in);
  void* host_out = pool_->take(bytes_of(out));
  return host_all_gather(host_in, host_out, in.numel(), in.dtype(), stage_out(out, host_out, {host_in, host_out}));
}
WorkHandle StagedCommunicator::reduce_scatter(const Tensor& in, const Tensor& out) {
  require_cuda_tensor(*this, "reduce_scatter", in);
  check_reduce_scatter(in, out);
  void* host_in = stage_in(in);
  void* host_out = pool_->take(bytes_of(out));
  return host_reduce_scatter(host_in, host_out, out.numel(), in.dtype(),
                             stage_out(out, host_out, {host_in, host_out}));
}
WorkHandle StagedCommunicator::broadcast(const Tensor& t, int root) {
  require_cuda_tensor(*this, "broadcast", t);
  void* host = stage_in(t);
  return host_broadcast(host, t.numel(), t.dtype(), root, stage_out(t, host, {host}));
}
WorkHandle StagedCommunicator::send(const Tensor& t, int peer, int tag) {
  require_cuda_tensor(*this, "send", t);
  check_peer("send", peer);
  void* host = stage_in(t);
  return host_send(host, t.numel(), t.dtype(), peer, tag, stage_out(Tensor(), host, {host}));
}
WorkHandle StagedCommunicator::recv(const Tensor& t, int peer, int tag) {
  require_cuda_tensor(*this, "recv", t);
  check_peer("recv", peer);
  void* host = pool_->take(bytes_of(t));
  return host_recv(host, t.numel(), t.dtype(), peer, tag, stage_out(t, host, {host}));
}

}  // namespace mgl::dist

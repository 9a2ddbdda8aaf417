#pragma once
// Communicators over MPI (dist/communicator.h): MpiCommunicator for CPU tensors, and
// StagedCommunicator for CUDA tensors, which stages them through pinned host memory (the compute
// stream is synchronised, the data copied to the host, reduced by MPI, and copied back). The staged
// path is for machines where NCCL cannot be used (several ranks sharing one GPU); it costs two copies
// and a host round trip per operation, so NCCL is the choice whenever each rank has its own GPU.
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "dist/communicator.h"
#include "dist/mpi_world.h"

namespace mgl::dist {

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(std::string name, MpiComm comm, std::shared_ptr<const FaultMonitor> monitor);

  WorkHandle all_reduce(const Tensor& t, ReduceOp op) override;
  WorkHandle all_gather(const Tensor& in, const Tensor& out) override;
  WorkHandle reduce_scatter(const Tensor& in, const Tensor& out) override;
  WorkHandle broadcast(const Tensor& t, int root) override;
  WorkHandle send(const Tensor& t, int peer, int tag) override;
  WorkHandle recv(const Tensor& t, int peer, int tag) override;
  void barrier() override;

 protected:
  // The operations on host memory (counts in elements of `dtype`). `keep` is held until completion;
  // `finish` runs once the MPI requests are complete, inside wait().
  struct HostOp {
    std::vector<Tensor> keep;
    std::function<void()> finish;
  };
  WorkHandle host_all_reduce(void* data, int64_t count, DType dtype, ReduceOp op, HostOp extra);
  WorkHandle host_all_gather(const void* in, void* out, int64_t count, DType dtype, HostOp extra);
  WorkHandle host_reduce_scatter(const void* in, void* out, int64_t count, DType dtype, HostOp extra);
  WorkHandle host_broadcast(void* data, int64_t count, DType dtype, int root, HostOp extra);
  WorkHandle host_send(const void* data, int64_t count, DType dtype, int peer, int tag, HostOp extra);
  WorkHandle host_recv(void* data, int64_t count, DType dtype, int peer, int tag, HostOp extra);
  void require_cpu(const char* op, const Tensor& t) const;
  // Checks the return `status` of a non-blocking MPI call and wraps its request (an MPI_Request*) in a Work.
  WorkHandle started(const std::string& what, int status, void* request, HostOp extra) const;

  MpiComm comm_;
  std::shared_ptr<const FaultMonitor> monitor_;
};

// Pinned host buffers reused across operations (cudaMallocHost is slow; a training step reuses the
// same sizes). Thread-compatible: used from the main thread only.
class PinnedPool {
 public:
  PinnedPool() = default;
  ~PinnedPool();
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;
  void* take(size_t bytes);
  void give_back(void* buffer);

 private:
  struct Block {
    void* data;
    size_t bytes;
    bool in_use;
  };
  std::vector<Block> blocks_;
};

class StagedCommunicator final : public MpiCommunicator {
 public:
  StagedCommunicator(std::string name, MpiComm comm, std::shared_ptr<const FaultMonitor> monitor);

  WorkHandle all_reduce(const Tensor& t, ReduceOp op) override;
  WorkHandle all_gather(const Tensor& in, const Tensor& out) override;
  WorkHandle reduce_scatter(const Tensor& in, const Tensor& out) override;
  WorkHandle broadcast(const Tensor& t, int root) override;
  WorkHandle send(const Tensor& t, int peer, int tag) override;
  WorkHandle recv(const Tensor& t, int peer, int tag) override;

 private:
  // Copies `t` (CUDA) into a pinned buffer after the compute stream has produced it.
  void* stage_in(const Tensor& t);
  // What wait() does at the end: copy `host` into `t` (if defined) and return the buffer to the pool.
  HostOp stage_out(const Tensor& t, void* host, std::vector<void*> buffers);

  std::shared_ptr<PinnedPool> pool_ = std::make_shared<PinnedPool>();
};

}  // namespace mgl::dist

#pragma once
// NcclCommunicator: CUDA tensors through NCCL (dist/communicator.h), one GPU per rank.
//
// Ordering without device-wide syncs. Each group has its own communication stream. An operation
// records an event on the compute stream, makes the communication stream wait for it (the data is
// produced), enqueues the NCCL call there and records a "done" event; wait() makes the compute stream
// wait for "done" (the host never blocks). Tensors an operation touches are held until its Work is
// waited or destroyed, and the caching allocator frees them in compute-stream order after that wait,
// so no buffer is reused while NCCL still reads it.
//
// Faults. A watchdog thread polls every pending "done" event and the communicator's asynchronous
// error; an operation older than the timeout, or an NCCL error, makes it print one line (rank, step,
// operation), abort the NCCL communicators (ncclCommAbort) and end the job.
#include <atomic>
#include <memory>

#include "cuda/comm.h"
#include "dist/communicator.h"

namespace mgl::dist {

class NcclWatchdog;

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the group's ranks: `id` comes from the group's rank 0 (over MPI).
  NcclCommunicator(std::string name, int rank, int size, const cuda::NcclUniqueId& id, Device device,
                   std::shared_ptr<FaultMonitor> monitor);
  ~NcclCommunicator() override;

  WorkHandle all_reduce(const Tensor& t, ReduceOp op) override;
  WorkHandle all_gather(const Tensor& in, const Tensor& out) override;
  WorkHandle reduce_scatter(const Tensor& in, const Tensor& out) override;
  WorkHandle broadcast(const Tensor& t, int root) override;
  WorkHandle send(const Tensor& t, int peer, int tag) override;
  WorkHandle recv(const Tensor& t, int peer, int tag) override;
  void barrier() override;

 private:
  // Orders the communication stream after the compute stream, runs `enqueue` on it, and returns the
  // Work that orders the compute stream after it.
  template <class F>
  WorkHandle launch(const std::string& what, std::vector<Tensor> keep, F enqueue);
  void require(const char* op, const Tensor& t) const;

  Device device_;
  void* comm_ = nullptr;
  cuda::Stream stream_ = nullptr;
  cuda::Event ready_ = nullptr;
  std::shared_ptr<NcclWatchdog> watchdog_;
  std::shared_ptr<std::atomic<void*>> live_;  // comm_ until destroyed or aborted
};

}  // namespace mgl::dist

#pragma once
// Communicator: the collective and point-to-point operations of one process group, on tensors.
//
// Three backends implement it and pass the same tests (tests/dist/):
//   MpiCommunicator      CPU tensors, through MPI (dist/mpi_communicator.h);
//   StagedCommunicator   CUDA tensors through MPI, staged in pinned host memory, for machines where
//                        NCCL cannot be used (several ranks sharing one GPU, which NCCL refuses);
//   NcclCommunicator     CUDA tensors through NCCL on the group's own communication stream, ordered
//                        against the compute stream with events (dist/nccl_communicator.h).
// plus SelfCommunicator, the group of one process (a plain run: no MPI at all).
//
// Every operation is asynchronous and returns a Work; wait() completes it from the caller's point of
// view: for CPU tensors the data is there when wait() returns; for CUDA tensors, work enqueued on the
// compute stream after wait() sees the result (NCCL: the compute stream waits on an event, the host
// does not block). Operations of one group must be issued in the same order on every rank.
// Tensors are contiguous; in-place operations write their input. A wait that does not finish within
// the group's timeout ends the whole job through the FaultMonitor (dist/fault_monitor.h).
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "dist/fault_monitor.h"

namespace mgl::dist {

enum class ReduceOp { sum, max };

class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};
using WorkHandle = std::unique_ptr<Work>;

// A Work that is already complete.
WorkHandle completed_work();

// Operations whose completion nobody waits for at once (a sent state, a gradient sent back): kept
// here, and waited together at a point where every rank is done with them (the end of a step).
class PendingWork {
 public:
  void add(WorkHandle work) { pending_.push_back(std::move(work)); }
  void wait_all() {
    for (WorkHandle& w : pending_) w->wait();
    pending_.clear();
  }
  size_t size() const { return pending_.size(); }

 private:
  std::vector<WorkHandle> pending_;
};

class Communicator {
 public:
  Communicator(std::string name, int rank, int size) : name_(std::move(name)), rank_(rank), size_(size) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  const std::string& name() const { return name_; }  // "data", "chunk", "tensor", "world", ...
  int rank() const { return rank_; }                 // this process's index in the group
  int size() const { return size_; }

  // t <- op over the group of every rank's t (in place).
  virtual WorkHandle all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
  // out (size * in.numel() elements) <- the ranks' `in`, rank order, concatenated flat.
  virtual WorkHandle all_gather(const Tensor& in, const Tensor& out) = 0;
  // out (in.numel() / size elements) <- sum over ranks of piece `rank` of their flat `in`.
  virtual WorkHandle reduce_scatter(const Tensor& in, const Tensor& out) = 0;
  // t <- root's t.
  virtual WorkHandle broadcast(const Tensor& t, int root) = 0;
  // Point to point: `tag` tells apart messages between the same two ranks (matched in order).
  virtual WorkHandle send(const Tensor& t, int peer, int tag) = 0;
  virtual WorkHandle recv(const Tensor& t, int peer, int tag) = 0;
  virtual void barrier() = 0;

 protected:
  // Shapes and dtypes every backend checks the same way (throws mgl::Error naming the op).
  void check_all_gather(const Tensor& in, const Tensor& out) const;
  void check_reduce_scatter(const Tensor& in, const Tensor& out) const;
  void check_tensor(const char* op, const Tensor& t) const;
  void check_peer(const char* op, int peer) const;

 private:
  std::string name_;
  int rank_, size_;
};

// The group of one process: reductions and broadcasts leave t as it is, gathers copy. A send to
// oneself has no receiver and is an error.
class SelfCommunicator final : public Communicator {
 public:
  explicit SelfCommunicator(std::string name) : Communicator(std::move(name), 0, 1) {}
  WorkHandle all_reduce(const Tensor& t, ReduceOp op) override;
  WorkHandle all_gather(const Tensor& in, const Tensor& out) override;
  WorkHandle reduce_scatter(const Tensor& in, const Tensor& out) override;
  WorkHandle broadcast(const Tensor& t, int root) override;
  WorkHandle send(const Tensor& t, int peer, int tag) override;
  WorkHandle recv(const Tensor& t, int peer, int tag) override;
  void barrier() override {}
};

}  // namespace mgl::dist

#pragma once
// ParallelState: the process grid and its groups, built once at start and passed explicitly (no
// globals). The grid is data x chunk x tensor with tensor fastest-varying (docs/parallelism.md):
//   world rank = (dp * CP + cp) * TP + tp
// so the TP ranks of one (dp, cp) are consecutive (one NVLink island), CP groups stride TP, and DP
// groups stride CP * TP. Each process belongs to one group per axis, plus:
//   data_chunk: the ranks with the same tp, i.e. the ranks that hold the same parameter shards; a
//               replicated parameter's gradient is summed over it (DP and CP together, one collective);
//   world:      every rank.
// Each group offers a Communicator for CPU tensors (MPI) and, on CUDA runs, one for CUDA tensors
// (NCCL, or MPI staged through pinned memory where NCCL cannot be used).
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "dist/fault_monitor.h"

namespace mgl::dist {

struct GridSizes {
  int64_t data = 1, chunk = 1, tensor = 1;
  int64_t product() const { return data * chunk * tensor; }
  std::string str() const;  // "data 2 x chunk 2 x tensor 1"
};

struct GridCoordinates {
  int64_t data = 0, chunk = 0, tensor = 0;
};

// Where rank `rank` sits in `sizes` (tensor fastest), and back.
GridCoordinates grid_coordinates(int64_t rank, const GridSizes& sizes);
int64_t grid_rank(const GridCoordinates& c, const GridSizes& sizes);

enum class CudaBackend { none, nccl, staged_mpi };

struct ParallelOptions {
  GridSizes sizes;
  std::string backend = "auto";  // auto | nccl | mpi: how CUDA tensors travel (CPU tensors: MPI)
  double timeout_s = 60;         // a communication that takes longer ends the job (dist/fault_monitor.h)
};

// One group: its communicator for CPU tensors, and for CUDA tensors on CUDA runs.
class ProcessGroup {
 public:
  ProcessGroup(std::unique_ptr<Communicator> cpu, std::unique_ptr<Communicator> cuda);
  int rank() const { return cpu_->rank(); }
  int size() const { return cpu_->size(); }
  const std::string& name() const { return cpu_->name(); }
  // The communicator for tensors on `device`.
  Communicator& on(const Device& device) const;
  // A host number summed over the group (every rank gets the sum; waits).
  double sum(double value) const;

 private:
  std::unique_ptr<Communicator> cpu_, cuda_;
};

class ParallelState {
 public:
  // A plain run: one process, no MPI; every group has one rank. `device` as for create().
  static std::shared_ptr<ParallelState> single_process(const Device& device = Device::cpu(), double timeout_s = 60);
  // Under an MPI launcher (or a plain run, which needs no MPI): checks the grid against the world size
  // (one error naming the sizes), picks the device (`device` "cuda" means cuda:<local rank mod
  // GPUs>), and builds every group. Collective over the world.
  static std::shared_ptr<ParallelState> create(const ParallelOptions& options, const std::string& device);

  const GridSizes& sizes() const { return sizes_; }
  const GridCoordinates& coordinates() const { return coordinates_; }
  int world_rank() const { return world_rank_; }
  int world_size() const { return static_cast<int>(sizes_.product()); }
  int local_rank() const { return local_rank_; }
  const Device& device() const { return device_; }
  CudaBackend cuda_backend() const { return cuda_backend_; }
  bool distributed() const { return world_size() > 1; }
  bool is_logging_rank() const { return world_rank_ == 0; }  // prints, writes the run folder

  const ProcessGroup& world() const { return *world_; }
  const ProcessGroup& data() const { return *data_; }
  const ProcessGroup& chunk() const { return *chunk_; }
  const ProcessGroup& tensor() const { return *tensor_; }
  const ProcessGroup& data_chunk() const { return *data_chunk_; }
  FaultMonitor& monitor() const { return *monitor_; }

  // The previous and next rank of this rank's chunk group (-1 at the ends of the sequence).
  int chunk_prev() const { return coordinates_.chunk > 0 ? static_cast<int>(coordinates_.chunk - 1) : -1; }
  int chunk_next() const {
    return coordinates_.chunk + 1 < sizes_.chunk ? static_cast<int>(coordinates_.chunk + 1) : -1;
  }

  // A barrier of the world after work that some ranks do alone (rank 0 preparing the data or writing
  // a checkpoint), bounded by kLongWorkTimeout_s rather than the communication timeout.
  static constexpr double kLongWorkTimeout_s = 3600;
  void barrier_after_long_work() const;

  // Throws mgl::Error unless every rank passes the same `text` (compared by a 64-bit hash), naming
  // the first rank that differs from rank 0: e.g. the resolved config and the binary's build id.
  void require_same_everywhere(const std::string& what, const std::string& text) const;
  // One line per rank: "rank 3: data 1, chunk 1, tensor 0 on cuda:3" (gathered to rank 0; empty elsewhere).
  std::string describe_grid() const;

 private:
  ParallelState() = default;

  GridSizes sizes_;
  GridCoordinates coordinates_;
  int world_rank_ = 0, local_rank_ = 0;
  Device device_ = Device::cpu();
  CudaBackend cuda_backend_ = CudaBackend::none;
  std::shared_ptr<FaultMonitor> monitor_;
  std::unique_ptr<ProcessGroup> world_, data_, chunk_, tensor_, data_chunk_;
};

// A fingerprint of this process's executable (its size and FNV-1a hash of its bytes), so that ranks
// running different builds are told apart at start.
std::string build_id();

}  // namespace mgl::dist

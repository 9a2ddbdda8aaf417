#pragma once
// The MPI side of a process: whether it was started by an MPI launcher, and the world communicator
// with its node-local numbering (which GPU a rank drives). A plain run (no launcher) never calls MPI.
#include <memory>

namespace mgl::dist {

class FaultMonitor;

// An MPI communicator handle (MPI_Comm) without the MPI header; owned (freed) unless it is the world.
class MpiComm {
 public:
  MpiComm() = default;
  ~MpiComm();
  MpiComm(MpiComm&& other) noexcept;
  MpiComm& operator=(MpiComm&& other) noexcept;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  static MpiComm world();
  // MPI_Comm_split: collective over this communicator; ranks of one color form a group, ordered by key.
  MpiComm split(int color, int key) const;
  int rank() const;
  int size() const;
  bool valid() const { return handle_ != nullptr; }
  void* handle() const { return handle_; }  // the MPI_Comm, cast by dist/mpi_*.cpp

 private:
  void* handle_ = nullptr;
  bool owned_ = false;
};

struct MpiWorld {
  int rank = 0, size = 1;              // in MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // among the ranks on this node (MPI_COMM_TYPE_SHARED)
};

// True when the environment says an MPI launcher (mpirun, srun with PMI) started this process.
bool launched_by_mpi();
// This process's world rank as the launcher's environment tells it (0 without a launcher): known before
// MPI is initialised, so errors in the command line are reported by rank 0 alone.
int launcher_rank();
// Initialises MPI once (thread level "funneled": only the main thread calls MPI), makes MPI errors
// return codes instead of aborting (every call is checked and throws mgl::Error naming it), and
// finalises at exit. Returns the world's numbering.
MpiWorld initialize_mpi();
// Whether another rank on this node uses the same GPU `device_index` (collective over the world).
bool gpu_shared_on_node(int device_index);
// Whether `flag` is true on any rank (collective over the world).
bool on_any_rank(bool flag);
// Ends every rank of the job with `code` (MPI_Abort; before MPI is initialised, this process exits and
// the launcher ends the others); used by the fault monitor and by apps on error.
[[noreturn]] void abort_mpi_job(int code);

}  // namespace mgl::dist

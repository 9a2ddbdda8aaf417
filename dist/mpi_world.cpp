#include "dist/mpi_world.h"

#include <mpi.h>

#include <cstdlib>
#include <vector>
#include <utility>

#include "dist/mpi_check.h"

namespace mgl::dist {

namespace {
MPI_Comm as_comm(void* handle) { return reinterpret_cast<MPI_Comm>(handle); }
}  // namespace

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && handle_ && !finalized) {
    MPI_Comm comm = as_comm(handle_);
    MPI_Comm_free(&comm);
  }
}

MpiComm::MpiComm(MpiComm&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), owned_(std::exchange(other.owned_, false)) {}

MpiComm& MpiComm::operator=(MpiComm&& other) noexcept {
  if (this != &other) {
    MpiComm dropped(std::move(*this));
    handle_ = std::exchange(other.handle_, nullptr);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

MpiComm MpiComm::world() {
  MpiComm c;
  c.handle_ = reinterpret_cast<void*>(MPI_COMM_WORLD);
  return c;
}

MpiComm MpiComm::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  MGL_MPI_CHECK(MPI_Comm_split(as_comm(handle_), color, key, &out));
  MGL_MPI_CHECK(MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN));
  MpiComm c;
  c.handle_ = reinterpret_cast<void*>(out);
  c.owned_ = true;
  return c;
}

int MpiComm::rank() const {
  int r = 0;
  MGL_MPI_CHECK(MPI_Comm_rank(as_comm(handle_), &r));
  return r;
}

int MpiComm::size() const {
  int s = 0;
  MGL_MPI_CHECK(MPI_Comm_size(as_comm(handle_), &s));
  return s;
}

bool launched_by_mpi() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(variable)) return true;
  return false;
}

int launcher_rank() {
  for (const char* variable : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* value = std::getenv(variable)) return std::atoi(value);
  return 0;
}

MpiWorld initialize_mpi() {
  int initialized = 0;
  MGL_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    MGL_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  MGL_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MpiWorld w;
  MGL_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank));
  MGL_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &w.size));
  MPI_Comm local = MPI_COMM_NULL;
  MGL_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &local));
  MGL_MPI_CHECK(MPI_Comm_rank(local, &w.local_rank));
  MGL_MPI_CHECK(MPI_Comm_size(local, &w.local_size));
  MPI_Comm_free(&local);
  return w;
}

bool gpu_shared_on_node(int device_index) {
  MPI_Comm local = MPI_COMM_NULL;
  MGL_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int size = 0;
  MGL_MPI_CHECK(MPI_Comm_size(local, &size));
  std::vector<int> devices(size);
  MGL_MPI_CHECK(MPI_Allgather(&device_index, 1, MPI_INT, devices.data(), 1, MPI_INT, local));
  MPI_Comm_free(&local);
  int shared = 0;
  for (int d : devices) shared += d == device_index;
  return on_any_rank(shared > 1);
}

bool on_any_rank(bool flag) {
  int mine = flag ? 1 : 0, any = 0;
  MGL_MPI_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD));
  return any != 0;
}

void abort_mpi_job(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace mgl::dist

// The CUDA backends pass the same tests as the MPI backend on CPU tensors (run under mpirun with 2
// and 4 ranks): MPI staged through pinned host memory (ranks may share a GPU), NCCL on one rank, and
// NCCL across ranks when every rank has its own GPU.
#include "core/cuda_context.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "dist/nccl_communicator.h"

MGL_CUDA_TEST_FILE

using namespace mgl;
using namespace mgl::testing;

namespace {

std::shared_ptr<dist::ParallelState> grid(int64_t data, int64_t chunk, const std::string& backend) {
  dist::ParallelOptions o;
  o.sizes = {data, chunk, 1};
  o.backend = backend;
  o.timeout_s = 120;
  return dist::ParallelState::create(o, "cuda");
}

const DType kDtypes[] = {DType::f32, DType::f64, DType::bf16, DType::i64};

}  // namespace

TEST_CASE("staged MPI backend on CUDA tensors") {
  const int w = dist::initialize_mpi().size;
  const auto ps = grid(w, 1, "mpi");
  REQUIRE(ps->cuda_backend() == dist::CudaBackend::staged_mpi);
  const uint64_t seed = shared_seed(ps->world());
  for (DType dtype : kDtypes) run_communicator_suite(ps->world().on(ps->device()), ps->device(), dtype, seed);
  if (w % 2 == 0) {
    const auto split = grid(2, w / 2, "mpi");
    run_communicator_suite(split->chunk().on(split->device()), split->device(), DType::f32, seed + 1);
    run_communicator_suite(split->data().on(split->device()), split->device(), DType::bf16, seed + 2);
  }
}

TEST_CASE("NCCL backend on one rank") {
  const auto ps = grid(dist::initialize_mpi().size, 1, "mpi");
  const uint64_t seed = shared_seed(ps->world());
  cuda::NcclUniqueId id{};
  MGL_ON_CUDA(id = cuda::nccl_unique_id());
  auto monitor = std::make_shared<dist::FaultMonitor>(ps->world_rank(), 120.0, nullptr);
  dist::NcclCommunicator solo("solo", 0, 1, id, ps->device(), monitor);
  for (DType dtype : kDtypes) run_communicator_suite(solo, ps->device(), dtype, seed);
}

TEST_CASE("NCCL backend across ranks, one GPU each") {
  const dist::MpiWorld w = dist::initialize_mpi();
  if (w.local_size > cuda_device_count()) {
    WARN("skipped: " << w.local_size << " ranks share " << cuda_device_count()
                     << " GPU(s) on this node, which NCCL refuses (the staged backend covers this case)");
    return;
  }
  const auto ps = grid(w.size, 1, "nccl");
  REQUIRE(ps->cuda_backend() == dist::CudaBackend::nccl);
  const uint64_t seed = shared_seed(ps->world());
  for (DType dtype : kDtypes) run_communicator_suite(ps->world().on(ps->device()), ps->device(), dtype, seed);
}

TEST_CASE("parallel.backend=nccl on a shared GPU is one clear error") {
  const dist::MpiWorld w = dist::initialize_mpi();
  if (w.local_size <= cuda_device_count()) return;
  CHECK(contains(error_message([&] { grid(w.size, 1, "nccl"); }), "which NCCL refuses"));
}

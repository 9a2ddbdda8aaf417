#include "dist/parallel_state.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/cuda_context.h"
#include "core/fnv1a.h"
#include "dist/gather_strings.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_world.h"
#include "dist/nccl_communicator.h"

namespace mgl::dist {

std::string GridSizes::str() const {
  return "data " + std::to_string(data) + " x chunk " + std::to_string(chunk) + " x tensor " + std::to_string(tensor);
}

GridCoordinates grid_coordinates(int64_t rank, const GridSizes& s) {
  return {rank / (s.chunk * s.tensor), rank / s.tensor % s.chunk, rank % s.tensor};
}

int64_t grid_rank(const GridCoordinates& c, const GridSizes& s) { return (c.data * s.chunk + c.chunk) * s.tensor + c.tensor; }

ProcessGroup::ProcessGroup(std::unique_ptr<Communicator> cpu, std::unique_ptr<Communicator> cuda)
    : cpu_(std::move(cpu)), cuda_(std::move(cuda)) {}

Communicator& ProcessGroup::on(const Device& device) const {
  if (device.is_cpu()) return *cpu_;
  MGL_CHECK(cuda_, "the ", name(), " group has no communicator for CUDA tensors (", device.str(),
            "): this run was set up for the CPU");
  return *cuda_;
}

double ProcessGroup::sum(double value) const {
  const Tensor t = Tensor::from_vector(std::vector<double>{value}, {1});
  cpu_->all_reduce(t, ReduceOp::sum)->wait();
  return t.item();
}

std::string build_id() {
  // Read once: the bytes of the running executable (Linux exposes it as /proc/self/exe).
  static const std::string id = [] {
    std::ifstream in("/proc/self/exe", std::ios::binary);
    MGL_CHECK(in.good(), "cannot read /proc/self/exe to fingerprint this binary");
    uint64_t hash = kFnv1aOffsetBasis, size = 0;
    std::vector<char> buffer(1 << 20);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
      hash = fnv1a64(buffer.data(), static_cast<size_t>(in.gcount()), hash);
      size += static_cast<uint64_t>(in.gcount());
    }
    return "executable of " + std::to_string(size) + " bytes, FNV-1a " + std::to_string(hash);
  }();
  return id;
}

namespace {

void check_sizes(const GridSizes& s, int world_size) {
  MGL_CHECK(s.data >= 1 && s.chunk >= 1 && s.tensor >= 1, "parallel sizes must be >= 1, got ", s.str());
  MGL_CHECK(s.product() == world_size, "the grid ", s.str(), " has ", s.product(),
            " ranks but the job has ", world_size, " processes: set parallel.data * parallel.chunk * parallel.tensor = ",
            world_size);
}

Device pick_device(const std::string& name, int local_rank) {
  if (name == "cpu" || (name == "auto" && !cuda_available())) return Device::cpu();
  const bool want_cuda = name == "cuda" || (name == "auto" && cuda_available());
  if (!want_cuda) return Device::parse(name);  // an explicit "cuda:N" or a bad name (parse throws)
  MGL_CHECK(cuda_available(), "--device ", name, ": no usable CUDA device here (", cuda_unavailable_reason(), ")");
  return Device::cuda(local_rank % cuda_device_count());
}

// Every rank must make the same choice (the groups are built alike everywhere), so whether any GPU is
// shared is agreed over the world. Collective over the world for CUDA runs.
CudaBackend pick_backend(const std::string& backend, const Device& device, const MpiWorld& w) {
  MGL_CHECK(backend == "auto" || backend == "nccl" || backend == "mpi", "parallel.backend must be auto, nccl or mpi, got '",
            backend, "'");
  const bool cuda = on_any_rank(device.is_cuda());
  if (!cuda) return CudaBackend::none;
  MGL_CHECK(device.is_cuda(), "this rank runs on ", device.str(), " while others use CUDA: every rank needs the same kind of device");
  // NCCL refuses two ranks of one communicator on the same GPU.
  const bool shared_gpu = gpu_shared_on_node(device.index);
  if (backend == "nccl") {
    MGL_CHECK(!shared_gpu, "parallel.backend=nccl: ranks on one node share a GPU (", w.local_size, " ranks, ",
              cuda_device_count(), " GPU(s) on this node), which NCCL refuses; use parallel.backend=mpi (staged ",
              "through host memory) or one rank per GPU");
    return CudaBackend::nccl;
  }
  if (backend == "mpi" || shared_gpu || w.size == 1) return CudaBackend::staged_mpi;
  return CudaBackend::nccl;
}

}  // namespace

std::shared_ptr<ParallelState> ParallelState::single_process(const Device& device, double timeout_s) {
  std::shared_ptr<ParallelState> s(new ParallelState());
  s->device_ = device;
  s->monitor_ = std::make_shared<FaultMonitor>(0, timeout_s, nullptr);
  auto group = [&](const char* name) {
    return std::make_unique<ProcessGroup>(std::make_unique<SelfCommunicator>(name),
                                          device.is_cuda() ? std::make_unique<SelfCommunicator>(name) : nullptr);
  };
  s->world_ = group("world");
  s->data_ = group("data");
  s->chunk_ = group("chunk");
  s->tensor_ = group("tensor");
  s->data_chunk_ = group("data_chunk");
  return s;
}

std::shared_ptr<ParallelState> ParallelState::create(const ParallelOptions& options, const std::string& device_name) {
  if (!launched_by_mpi()) {
    check_sizes(options.sizes, 1);
    const Device device = pick_device(device_name, 0);
    return single_process(device, options.timeout_s);
  }
  const MpiWorld w = initialize_mpi();
  check_sizes(options.sizes, w.size);
  std::shared_ptr<ParallelState> s(new ParallelState());
  s->sizes_ = options.sizes;
  s->world_rank_ = w.rank;
  s->local_rank_ = w.local_rank;
  s->coordinates_ = grid_coordinates(w.rank, options.sizes);
  s->device_ = pick_device(device_name, w.local_rank);
  s->cuda_backend_ = pick_backend(options.backend, s->device_, w);
  s->monitor_ = std::make_shared<FaultMonitor>(w.rank, options.timeout_s, [](int code) { abort_mpi_job(code); });
  if (s->device_.is_cuda()) {
    DeviceGuard guard(s->device_);
    compute_stream(s->device_);  // the rank's GPU becomes current before NCCL binds to it
  }

  const GridSizes& g = options.sizes;
  const GridCoordinates& c = s->coordinates_;
  const MpiComm world = MpiComm::world();
  auto group = [&](const char* name, int64_t color, int64_t key) {
    MpiComm cpu_comm = world.split(static_cast<int>(color), static_cast<int>(key));
    std::unique_ptr<Communicator> cuda_comm;
    if (s->cuda_backend_ == CudaBackend::staged_mpi) {
      cuda_comm = std::make_unique<StagedCommunicator>(name, world.split(static_cast<int>(color), static_cast<int>(key)),
                                                       s->monitor_);
    } else if (s->cuda_backend_ == CudaBackend::nccl) {
      // The group's rank 0 makes the NCCL id and broadcasts it over the group's MPI communicator.
      MpiCommunicator bootstrap(name, world.split(static_cast<int>(color), static_cast<int>(key)), s->monitor_);
      const Tensor id = Tensor::empty({cuda::kNcclUniqueIdBytes / 4}, DType::i32, Device::cpu());
      cuda::NcclUniqueId nccl_id{};
      if (bootstrap.rank() == 0) MGL_ON_CUDA(nccl_id = cuda::nccl_unique_id());
      std::memcpy(id.raw_data(), nccl_id.bytes, cuda::kNcclUniqueIdBytes);
      bootstrap.broadcast(id, 0)->wait();
      std::memcpy(nccl_id.bytes, id.raw_data(), cuda::kNcclUniqueIdBytes);
      cuda_comm = std::make_unique<NcclCommunicator>(name, bootstrap.rank(), bootstrap.size(), nccl_id, s->device_,
                                                     s->monitor_);
    }
    auto cpu = std::make_unique<MpiCommunicator>(name, std::move(cpu_comm), s->monitor_);
    return std::make_unique<ProcessGroup>(std::move(cpu), std::move(cuda_comm));
  };
  s->world_ = group("world", 0, w.rank);
  s->tensor_ = group("tensor", c.data * g.chunk + c.chunk, c.tensor);
  s->chunk_ = group("chunk", c.data * g.tensor + c.tensor, c.chunk);
  s->data_ = group("data", c.chunk * g.tensor + c.tensor, c.data);
  s->data_chunk_ = group("data_chunk", c.tensor, c.data * g.chunk + c.chunk);
  return s;
}

void ParallelState::barrier_after_long_work() const {
  if (!distributed()) return;
  FaultMonitor::LongWait wait(*monitor_, kLongWorkTimeout_s);
  world_->on(Device::cpu()).barrier();
}

void ParallelState::require_same_everywhere(const std::string& what, const std::string& text) const {
  if (!distributed()) return;
  const uint64_t hash = fnv1a64(text.data(), text.size());
  Tensor mine = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(hash)}, {1});
  Tensor all = Tensor::empty({world_size()}, DType::i64);
  world_->on(Device::cpu()).all_gather(mine, all)->wait();
  const std::vector<int64_t> hashes = all.to_vector<int64_t>();
  for (int r = 1; r < world_size(); ++r)
    MGL_CHECK(hashes[r] == hashes[0], "rank ", r, "'s ", what, " differs from rank 0's: every rank must run the same ",
              "binary with the same config (check the command line and the files each node sees)");
}

std::string ParallelState::describe_grid() const {
  std::ostringstream line;
  line << "rank " << world_rank_ << ": data " << coordinates_.data << ", chunk " << coordinates_.chunk << ", tensor "
       << coordinates_.tensor << " on " << device_.str();
  if (!distributed()) return line.str();
  const std::vector<std::string> lines = gather_strings({line.str()}, *world_);
  std::string out;
  for (const std::string& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

}  // namespace mgl::dist

// The trainer on CUDA tensors under mpirun (2 and 4 ranks sharing one GPU through the staged MPI
// backend, or NCCL when every rank has its own GPU): every grid's step against the single-process
// step on the GPU, in f32 and bf16 — the loss and every parameter's gradient after one step, and the
// parameters after five steps with ZeRO-1.
//
// Tolerances: in f32 the runs differ only in summation order (batch and sequence split into other
// GEMM and reduction shapes): ~1e-6 relative, checked at 1e-5. In bf16 every activation is rounded
// to 8 bits of mantissa (relative 2^-9 = 2e-3) and the split changes which roundings happen where
// (other GEMM tilings, the chunk states carried in f32 instead of recomputed), so gradients of one
// step agree to ~1e-3..5e-3 relative; checked at 1e-2, the engine's bf16 tolerance.
#include <cmath>

#include "apps/lib/trainer.h"
#include "core/cuda_context.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "trainer_fixtures.h"

MGL_CUDA_TEST_FILE

using namespace mgl;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<dist::ParallelState> make_grid(int64_t data, int64_t chunk) {
  dist::ParallelOptions o;
  o.sizes = {data, chunk, 1};
  o.timeout_s = 300;
  return dist::ParallelState::create(o, "cuda");
}

apps::RunConfig grid_run(int64_t steps, int64_t data, int64_t chunk, const std::string& dtype, int64_t zero = 0) {
  apps::RunConfig c = small_run(steps);
  c.model.chunk_size = 16;
  c.model.dropout = c.model.hidden_dropout = c.model.attention_dropout = 0;
  c.schedule.warmup_steps = 2;
  c.train.dtype = dtype;
  c.parallel.data = data;
  c.parallel.chunk = chunk;
  c.parallel.zero = zero;
  c.parallel.bucket_mb = 0.25;
  return c;
}

std::vector<std::pair<int64_t, int64_t>> grids(int world) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t d = 1; d <= world; ++d)
    if (world % d == 0) out.emplace_back(d, world / d);
  return out;
}

std::vector<Tensor> host_f64(const apps::Trainer& t, bool gradients) {
  std::vector<Tensor> out;
  for (const nn::Parameter& p : t.model().named_parameters())
    out.push_back(cast(to(gradients ? p.tensor.grad() : p.tensor, Device::cpu()), DType::f64));
  return out;
}

fs::path shared_directory(const dist::ParallelState& ps, const std::string& name, uint64_t seed) {
  const fs::path dir = fs::temp_directory_path() / ("mgl_test_trainer_parallel_cuda_" + std::to_string(seed)) / name;
  if (ps.world_rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ps.world().on(Device::cpu()).barrier();
  return dir;
}

}  // namespace

TEST_CASE("trainer on CUDA: every grid's step equals the single-process step", "[apps][trainer][mpi][cuda]") {
  const int world = dist::initialize_mpi().size;
  const auto probe = make_grid(world, 1);
  const uint64_t seed = shared_seed(probe->world());
  const Device device = probe->device();
  const apps::PreparedData data = gcide_sample(scratch("data"), 400000);
  for (const std::string dtype : {"f32", "bf16"}) {
    const double tolerance = dtype == "f32" ? 1e-5 : 1e-2;
    apps::Trainer reference(options_for(grid_run(5, 1, 1, dtype), data, scratch("reference_" + dtype), false, device));
    const double loss_ref = reference.accumulate_gradients();
    const std::vector<Tensor> grads_ref = host_f64(reference, true);
    apps::Trainer reference5(options_for(grid_run(5, 1, 1, dtype), data, scratch("reference5_" + dtype), false, device));
    const apps::TrainingSummary summary_ref = reference5.run();
    const std::vector<Tensor> params_ref = host_f64(reference5, false);

    for (const auto& [d, c] : grids(world)) {
      INFO(dtype << ", grid data " << d << " x chunk " << c);
      const auto ps = make_grid(d, c);
      {
        apps::TrainerOptions o = options_for(grid_run(5, d, c, dtype), data, shared_directory(*ps, "one", seed));
        o.parallel = ps;
        apps::Trainer trainer(o);
        const double loss = trainer.accumulate_gradients();
        CHECK(std::abs(loss - loss_ref) <= tolerance * std::abs(loss_ref));
        const std::vector<Tensor> grads = host_f64(trainer, true);
        double worst = 0;
        for (size_t k = 0; k < grads.size(); ++k) worst = std::max(worst, relative_error(grads[k], grads_ref[k]));
        CHECK(worst <= tolerance);
        WARN(dtype << " grid data " << d << " x chunk " << c << ": loss " << loss << " vs " << loss_ref
                   << ", worst gradient relative error " << worst);
      }
      {
        apps::TrainerOptions o = options_for(grid_run(5, d, c, dtype, 1), data, shared_directory(*ps, "five", seed));
        o.parallel = ps;
        apps::Trainer trainer(o);
        const apps::TrainingSummary s = trainer.run();
        CHECK(std::abs(s.last_loss - summary_ref.last_loss) <= tolerance * std::abs(summary_ref.last_loss));
        const std::vector<Tensor> params = host_f64(trainer, false);
        double worst = 0;
        for (size_t k = 0; k < params.size(); ++k) worst = std::max(worst, relative_error(params[k], params_ref[k]));
        CHECK(worst <= tolerance);
        WARN(dtype << " grid data " << d << " x chunk " << c << ", ZeRO-1, five steps: loss " << s.last_loss << " vs "
                   << summary_ref.last_loss << ", worst parameter relative error " << worst);
      }
    }
  }
}

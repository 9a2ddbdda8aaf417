// The trainer under mpirun (2 and 4 ranks): every grid the world allows (DP, CP, DP x CP, with and
// without ZeRO-1) computes the single-process step, which every rank also runs by itself as the
// reference: the loss and every parameter's gradient after one step (f32: 1e-5), then five optimizer
// steps; ZeRO-1 gives plain DP's parameters; a checkpoint saved under one grid resumes under another
// (and in a single process) and continues the single-process loss curve.
#include <cmath>

#include "apps/lib/trainer.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "trainer_fixtures.h"

using namespace mgl;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<dist::ParallelState> make_grid(int64_t data, int64_t chunk) {
  dist::ParallelOptions o;
  o.sizes = {data, chunk, 1};
  o.timeout_s = 300;
  return dist::ParallelState::create(o, "cpu");
}

// The tiny model on sequences of 128 tokens in chunks of 16, so that up to 4 chunk ranks hold whole
// chunks, and a global batch of 4 that splits over up to 4 data ranks. No dropout: its masks are drawn
// per rank (docs/parallelism.md).
apps::RunConfig grid_run(int64_t steps, int64_t data, int64_t chunk, int64_t zero = 0) {
  apps::RunConfig c = small_run(steps);
  c.model.chunk_size = 16;
  c.model.dropout = c.model.hidden_dropout = c.model.attention_dropout = 0;
  c.schedule.warmup_steps = 2;
  c.parallel.data = data;
  c.parallel.chunk = chunk;
  c.parallel.zero = zero;
  c.parallel.bucket_mb = 0.25;  // several buckets, so their ordering is exercised
  return c;
}

// Every (data, chunk) whose product is the world size.
std::vector<std::pair<int64_t, int64_t>> grids(int world) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t d = 1; d <= world; ++d)
    if (world % d == 0) out.emplace_back(d, world / d);
  return out;
}

std::vector<Tensor> gradients_of(const apps::Trainer& t) {
  std::vector<Tensor> out;
  for (const nn::Parameter& p : t.model().named_parameters()) out.push_back(cast(p.tensor.grad(), DType::f64));
  return out;
}
std::vector<Tensor> parameters_of(const apps::Trainer& t) {
  std::vector<Tensor> out;
  for (const nn::Parameter& p : t.model().named_parameters()) out.push_back(cast(p.tensor, DType::f64));
  return out;
}

// A directory every rank names alike (rank 0's scratch), created by rank 0.
fs::path shared_directory(const dist::ParallelState& ps, const std::string& name, uint64_t seed) {
  const fs::path dir = fs::temp_directory_path() / ("mgl_test_trainer_parallel_" + std::to_string(seed)) / name;
  if (ps.world_rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ps.world().on(Device::cpu()).barrier();
  return dir;
}

double relative_difference(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

}  // namespace

TEST_CASE("trainer: one step under every grid equals the single-process step", "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const uint64_t seed = shared_seed(make_grid(world, 1)->world());
  const apps::PreparedData data = gcide_sample(scratch("data"), 400000);
  apps::Trainer reference(options_for(grid_run(5, 1, 1), data, scratch("reference")));
  const double loss_ref = reference.accumulate_gradients();
  const std::vector<Tensor> grads_ref = gradients_of(reference);

  for (const auto& [d, c] : grids(world)) {
    INFO("grid data " << d << " x chunk " << c);
    const auto ps = make_grid(d, c);
    apps::TrainerOptions o = options_for(grid_run(5, d, c), data, shared_directory(*ps, "one_step", seed));
    o.parallel = ps;
    apps::Trainer trainer(o);
    const double loss = trainer.accumulate_gradients();
    CHECK(relative_difference(loss, loss_ref) <= 1e-6);
    const std::vector<Tensor> grads = gradients_of(trainer);
    const auto names = trainer.model().named_parameters();
    double worst = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      const double e = relative_error(grads[k], grads_ref[k]);
      if (e > worst) worst = e;
      INFO(names[k].name);
      CHECK(e <= 1e-5);
    }
    WARN("grid data " << d << " x chunk " << c << ": loss " << loss << " vs " << loss_ref
                      << ", worst gradient relative error " << worst);
  }
}

TEST_CASE("trainer: five steps under every grid track the single-process run; ZeRO-1 equals plain DP",
          "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const uint64_t seed = shared_seed(make_grid(world, 1)->world());
  const apps::PreparedData data = gcide_sample(scratch("data5"), 400000);
  apps::Trainer reference(options_for(grid_run(5, 1, 1), data, scratch("reference5")));
  const apps::TrainingSummary summary_ref = reference.run();
  const std::vector<Tensor> params_ref = parameters_of(reference);

  for (const auto& [d, c] : grids(world)) {
    std::vector<Tensor> plain;
    for (int64_t zero : {0, 1}) {
      INFO("grid data " << d << " x chunk " << c << ", zero " << zero);
      const auto ps = make_grid(d, c);
      apps::TrainerOptions o = options_for(grid_run(5, d, c, zero), data,
                                           shared_directory(*ps, "five_" + std::to_string(zero), seed));
      o.parallel = ps;
      apps::Trainer trainer(o);
      const apps::TrainingSummary s = trainer.run();
      CHECK(relative_difference(s.last_loss, summary_ref.last_loss) <= 1e-5);
      REQUIRE(s.validation);
      CHECK(relative_difference(s.validation->loss, summary_ref.validation->loss) <= 1e-5);
      const std::vector<Tensor> params = parameters_of(trainer);
      for (size_t k = 0; k < params.size(); ++k) CHECK(relative_error(params[k], params_ref[k]) <= 1e-4);
      if (zero == 0) plain = params;
      else
        for (size_t k = 0; k < params.size(); ++k) CHECK(relative_error(params[k], plain[k]) <= 1e-6);
    }
  }
}

TEST_CASE("trainer: a checkpoint saved under one grid resumes under another", "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const auto first = make_grid(world, 1);
  const uint64_t seed = shared_seed(first->world());
  const apps::PreparedData data = gcide_sample(scratch("data_resume"), 400000);
  apps::RunConfig single = grid_run(6, 1, 1);
  single.train.checkpoint_every = 3;
  const fs::path reference_run = scratch("reference_resume");
  apps::Trainer reference(options_for(single, data, reference_run));
  reference.run();
  const std::vector<nlohmann::json> curve_ref = deterministic_metrics(reference_run);

  // Steps 1-3 with ZeRO-1 over all ranks as data parallelism, then 4-6 as chunk parallelism (DP x CP
  // when the world allows both), and in a single process from the same checkpoint.
  const fs::path run = shared_directory(*first, "resume", seed);
  apps::RunConfig saved = grid_run(3, world, 1, 1);
  saved.train.checkpoint_every = 3;
  {
    apps::TrainerOptions o = options_for(saved, data, run);
    o.parallel = first;
    apps::Trainer(o).run();
  }
  const int64_t d = world >= 4 ? 2 : 1, c = world / d;
  const auto second = make_grid(d, c);
  apps::RunConfig resumed = grid_run(6, d, c);
  resumed.train.checkpoint_every = 3;
  if (second->world_rank() == 0) fs::copy(run, run.parent_path() / "resume_single", fs::copy_options::recursive);
  second->world().on(Device::cpu()).barrier();
  {
    apps::TrainerOptions o = options_for(resumed, data, run, /*resume=*/true);
    o.parallel = second;
    apps::Trainer trainer(o);
    CHECK(trainer.step() == 3);
    trainer.run();
  }
  if (second->world_rank() != 0) return;
  apps::Trainer alone(options_for(grid_run(6, 1, 1), data, run.parent_path() / "resume_single", /*resume=*/true));
  CHECK(alone.step() == 3);
  alone.run();
  for (const fs::path& path : {run, run.parent_path() / "resume_single"}) {
    INFO(path);
    const std::vector<nlohmann::json> curve = deterministic_metrics(path);
    // Steps 1..6 (the first run logged 1..3 and a validation; the resumed run cut nothing it had logged).
    for (const std::string key : {"loss", "grad_norm"}) {
      std::vector<double> got, want;
      for (const auto& line : curve)
        if (line.contains(key)) got.push_back(line[key].get<double>());
      for (const auto& line : curve_ref)
        if (line.contains(key)) want.push_back(line[key].get<double>());
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO(key << " of step " << i + 1);
        CHECK(relative_difference(got[i], want[i]) <= 1e-5);
      }
    }
  }
}

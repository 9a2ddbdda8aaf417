// The trainer under mpirun (2 and 4 ranks; 8 for the 3-D grid): every grid the world allows (DP, CP,
// TP and their products, with and without ZeRO-1) computes the single-process step, which every rank
// also runs by itself as the reference: the loss and every parameter's gradient (this rank's piece of
// it under TP) after one step (f32: 1e-5), then five optimizer steps; ZeRO-1 gives plain DP's
// parameters; a checkpoint saved under one grid resumes under another (TP to DP and back, and in a
// single process) and continues the single-process loss curve.
#include <cmath>

#include "apps/lib/trainer.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "parallel_runs.h"

using namespace mgl;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<dist::ParallelState> cpu_grid(const dist::GridSizes& sizes) { return make_grid(sizes, "cpu"); }

}  // namespace

TEST_CASE("trainer: one step under every grid equals the single-process step", "[apps][trainer][mpi][grid3d]") {
  const int world = dist::initialize_mpi().size;
  const auto world_grid = cpu_grid({world, 1, 1});
  const uint64_t seed = shared_seed(world_grid->world());
  const SharedScratch shared(world_grid, seed);
  const apps::PreparedData data = generated_sample(scratch("data"), 400000);
  apps::Trainer reference(options_for(grid_run(5), data, scratch("reference")));
  const double loss_ref = reference.accumulate_gradients();
  const std::vector<Tensor> whole_ref = host_f64(reference, true);

  for (const dist::GridSizes& grid : grids(world)) {
    INFO("grid " << grid.str());
    const auto ps = cpu_grid(grid);
    apps::TrainerOptions o = options_for(grid_run(5, grid), data, shared("one_step"));
    o.parallel = ps;
    apps::Trainer trainer(o);
    const double loss = trainer.accumulate_gradients();
    CHECK(relative_difference(loss, loss_ref) <= 1e-6);
    const std::vector<Tensor> grads = host_f64(trainer, true), grads_ref = pieces_for(trainer, whole_ref);
    const auto names = trainer.model().named_parameters();
    double worst = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      const double e = relative_error(grads[k], grads_ref[k]);
      if (e > worst) worst = e;
      INFO(names[k].name);
      CHECK(e <= 1e-5);
    }
    WARN("grid " << grid.str() << ": loss " << loss << " vs " << loss_ref << ", worst gradient relative error " << worst);
  }
}

TEST_CASE("trainer: five steps under every grid track the single-process run; ZeRO-1 equals plain DP",
          "[apps][trainer][mpi][grid3d]") {
  // The loss and gradient norm of every step, and the validation, against the single process (f32:
  // only the summation order differs). Parameters are compared between ZeRO-1 and plain DP of the same
  // grid, not against the single process: AdamW divides each update by the gradient's own running
  // size, so an element whose gradient is at rounding level moves by up to lr per step whatever its
  // rounding; parameters of two summation orders are not close in norm, while the losses are.
  const int world = dist::initialize_mpi().size;
  const auto world_grid = cpu_grid({world, 1, 1});
  const uint64_t seed = shared_seed(world_grid->world());
  const SharedScratch shared(world_grid, seed);
  const apps::PreparedData data = generated_sample(scratch("data5"), 400000);
  const fs::path reference_run = scratch("reference5");
  apps::Trainer reference(options_for(grid_run(5), data, reference_run));
  reference.run();

  for (const dist::GridSizes& grid : grids(world)) {
    std::vector<Tensor> plain;
    for (int64_t zero : {0, 1}) {
      INFO("grid " << grid.str() << ", zero " << zero);
      const auto ps = cpu_grid(grid);
      const fs::path run = shared("five_" + std::to_string(zero));
      apps::TrainerOptions o = options_for(grid_run(5, grid, zero), data, run);
      o.parallel = ps;
      apps::Trainer trainer(o);
      trainer.run();
      if (ps->world_rank() == 0)
        for (const char* key : {"loss", "grad_norm", "val_loss"}) CHECK(worst_metric_difference(run, reference_run, key) <= 1e-5);
      const std::vector<Tensor> params = host_f64(trainer, false);
      if (zero == 0) plain = params;
      else
        for (size_t k = 0; k < params.size(); ++k) CHECK(relative_error(params[k], plain[k]) <= 1e-6);
    }
  }
}

TEST_CASE("trainer: under tensor parallelism the long-context evaluation scores the gathered whole model",
          "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const auto ps = cpu_grid({1, 1, world});
  const uint64_t seed = shared_seed(ps->world());
  const SharedScratch shared(ps, seed);
  const apps::PreparedData data = generated_sample(scratch("data_long"), 400000);
  apps::RunConfig config = grid_run(2, {1, 1, world});
  config.eval.long_context_tokens = 1024;
  const fs::path run = shared("long_context");
  apps::TrainerOptions o = options_for(config, data, run);
  o.parallel = ps;
  const apps::TrainingSummary summary = apps::Trainer(o).run();
  if (ps->world_rank() != 0) return;
  apps::RunConfig single = config;
  single.parallel.tensor = 1;
  const apps::TrainingSummary reference = apps::Trainer(options_for(single, data, scratch("long_single"))).run();
  REQUIRE(summary.long_context.size() == reference.long_context.size());
  REQUIRE(!reference.long_context.empty());
  for (size_t i = 0; i < reference.long_context.size(); ++i) {
    CHECK(summary.long_context[i].context == reference.long_context[i].context);
    CHECK(relative_difference(summary.long_context[i].mean_nll, reference.long_context[i].mean_nll) <= 1e-5);
  }
}

TEST_CASE("trainer: --init-from under tensor parallelism takes each rank's pieces of the whole weights",
          "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const auto ps = cpu_grid({1, 1, world});
  const uint64_t seed = shared_seed(ps->world());
  const SharedScratch shared(ps, seed);
  const apps::PreparedData data = generated_sample(scratch("data_init"), 400000);
  const fs::path source = shared("init_source");
  if (ps->world_rank() == 0) apps::Trainer(options_for(grid_run(2), data, source)).run();
  ps->world().on(Device::cpu()).barrier();
  apps::TrainerOptions whole = options_for(grid_run(2), data, scratch("init_whole"));
  whole.init_from = source.string();
  const apps::Trainer reference(whole);
  apps::TrainerOptions split = options_for(grid_run(2, {1, 1, world}), data, shared("init_split"));
  split.init_from = source.string();
  split.parallel = ps;
  const apps::Trainer trainer(split);
  CHECK(trainer.step() == 0);
  const std::vector<Tensor> mine = host_f64(trainer, false), expected = pieces_for(trainer, host_f64(reference, false));
  for (size_t k = 0; k < mine.size(); ++k) CHECK(relative_error(mine[k], expected[k]) == 0.0);
}

TEST_CASE("trainer: a checkpoint saved under one grid resumes under another", "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  const auto world_grid = cpu_grid({world, 1, 1});
  const uint64_t seed = shared_seed(world_grid->world());
  const SharedScratch shared(world_grid, seed);
  const apps::PreparedData data = generated_sample(scratch("data_resume"), 400000);
  apps::RunConfig single = grid_run(6);
  single.train.checkpoint_every = 3;
  const fs::path reference_run = scratch("reference_resume");
  apps::Trainer reference(options_for(single, data, reference_run));
  reference.run();

  // Steps 1-3 under one grid, then 4-6 under another and in a single process from the same checkpoint:
  // ZeRO-1 data parallelism over every rank to tensor parallelism (TP x CP where the world allows
  // both), and back.
  const dist::GridSizes dp{world, 1, 1};
  const dist::GridSizes tp = world >= 4 ? dist::GridSizes{1, 2, world / 2} : dist::GridSizes{1, 1, world};
  int scenario = 0;
  for (const auto& [from, onto] : {std::pair{dp, tp}, std::pair{tp, dp}}) {
    INFO(from.str() << " -> " << onto.str());
    const auto first = cpu_grid(from);
    const fs::path run = shared("resume_" + std::to_string(scenario++));
    apps::RunConfig saved = grid_run(3, from, /*zero=*/from.data > 1 ? 1 : 0);
    saved.train.checkpoint_every = 3;
    {
      apps::TrainerOptions o = options_for(saved, data, run);
      o.parallel = first;
      apps::Trainer(o).run();
    }
    const auto second = cpu_grid(onto);
    apps::RunConfig resumed = grid_run(6, onto, /*zero=*/onto.data > 1 ? 1 : 0);
    resumed.train.checkpoint_every = 3;
    const fs::path alone_run = run.string() + "_single";
    if (second->world_rank() == 0) fs::copy(run, alone_run, fs::copy_options::recursive);
    second->world().on(Device::cpu()).barrier();
    {
      apps::TrainerOptions o = options_for(resumed, data, run, /*resume=*/true);
      o.parallel = second;
      apps::Trainer trainer(o);
      CHECK(trainer.step() == 3);
      trainer.run();
    }
    if (second->world_rank() == 0) {
      apps::Trainer alone(options_for(grid_run(6), data, alone_run, /*resume=*/true));
      CHECK(alone.step() == 3);
      alone.run();
      // Steps 1..6 (the first run's validation at step 3 is an extra line the reference does not have).
      for (const fs::path& path : {run, alone_run})
        for (const char* key : {"loss", "grad_norm"}) CHECK(worst_metric_difference(path, reference_run, key) <= 1e-5);
    }
    second->world().on(Device::cpu()).barrier();
  }
}

TEST_CASE("trainer: under one grid, a resumed run replays the uninterrupted run bitwise", "[apps][trainer][mpi]") {
  const int world = dist::initialize_mpi().size;
  // DP x CP x TP where the world allows all three, DP x TP where it allows two.
  const dist::GridSizes grid = world >= 8 ? dist::GridSizes{2, 2, world / 4} : dist::GridSizes{world / 2, 1, 2};
  const auto ps = cpu_grid(grid);
  const uint64_t seed = shared_seed(ps->world());
  const SharedScratch shared(ps, seed);
  const apps::PreparedData data = generated_sample(scratch("data_bitwise"), 400000);
  apps::RunConfig config = grid_run(6, grid, /*zero=*/1);
  config.train.checkpoint_every = 3;
  const fs::path whole = shared("bitwise_whole");
  const fs::path cut = shared("bitwise_cut");
  for (const fs::path& run : {whole, cut}) {
    apps::RunConfig first = config;
    if (run == cut) first.train.steps = 3;  // stops after its checkpoint at step 3
    apps::TrainerOptions o = options_for(first, data, run);
    o.parallel = ps;
    apps::Trainer(o).run();
  }
  apps::TrainerOptions o = options_for(config, data, cut, /*resume=*/true);
  o.parallel = ps;
  apps::Trainer resumed(o);
  CHECK(resumed.step() == 3);
  resumed.run();
  if (ps->world_rank() != 0) return;
  // The cut run validated once more (at its end, step 3): drop that line, the rest must be equal.
  std::vector<nlohmann::json> replayed = deterministic_metrics(cut);
  std::erase_if(replayed, [](const nlohmann::json& line) { return line.contains("val_loss") && line["step"] == 3; });
  CHECK(replayed == deterministic_metrics(whole));
}

TEST_CASE("trainer: under tensor parallelism bf16 gradients are as close to f32 as the single process's",
          "[apps][trainer][mpi]") {
  // In bf16 a split layer adds roundings of its own (each rank's partial sums of wh2 and fc2, and of dM and
  // dn, are rounded to bf16 before they are added), so its gradients are not close to the single-process
  // bf16 run's at the 1e-2 the other grids keep: they are a second bf16 computation of the same gradient,
  // off by the bf16 error level itself (1.2e-2 to 3.9e-2 here). The fair bound compares both with the f32
  // gradient: over 150 seeds (75 on 2 ranks, 75 on 4; every rank's pieces) the split run's worst relative
  // error was 0.72 to 1.85 times the single process's (itself 1.5e-2 to 4.6e-2); checked at 3 times. On an
  // H100 the CUDA test saw 1.6e-2 to 2.4e-2 between the split and single bf16 runs, on the GCIDE text the
  // tests read before (tests/apps/test_trainer_parallel_mpi_cuda.cpp).
  // The single process's loss is the fused head's (f32 logits of the bf16 products, nn/megalodon.h
  // forward_loss), the split run's the vocabulary-parallel loss of bf16-rounded logits; on 4 seeds on 4 ranks
  // (on the GCIDE text) the ratio was 0.77 to 1.83 with the fused head and 0.86 to 1.79 with the unfused one:
  // the head's rounding is not what sets it.
  const int world = dist::initialize_mpi().size;
  const auto ps = cpu_grid({1, 1, world});
  const uint64_t seed = shared_seed(ps->world());
  const SharedScratch shared(ps, seed);
  const apps::PreparedData data = generated_sample(scratch("data_bf16"), 400000);
  auto config = [&](const dist::GridSizes& grid, const std::string& dtype) {
    apps::RunConfig c = grid_run(5, grid, 0, dtype);
    c.train.seed = static_cast<int64_t>(seed % 100000);
    return c;
  };
  apps::Trainer f32(options_for(config({}, "f32"), data, scratch("bf16_f32")));
  f32.accumulate_gradients();
  apps::Trainer single(options_for(config({}, "bf16"), data, scratch("bf16_single")));
  single.accumulate_gradients();
  apps::TrainerOptions o = options_for(config({1, 1, world}, "bf16"), data, shared("bf16_split"));
  o.parallel = ps;
  apps::Trainer split(o);
  split.accumulate_gradients();
  const std::vector<Tensor> exact = pieces_for(split, host_f64(f32, true)), rounded = pieces_for(split, host_f64(single, true));
  const std::vector<Tensor> mine = host_f64(split, true);
  double single_error = 0, split_error = 0;
  for (size_t k = 0; k < mine.size(); ++k) {
    single_error = std::max(single_error, relative_error(rounded[k], exact[k]));
    split_error = std::max(split_error, relative_error(mine[k], exact[k]));
  }
  INFO("seed " << seed % 100000 << ": worst error against f32, split " << split_error << ", single " << single_error);
  CHECK(split_error <= 3 * single_error);
}

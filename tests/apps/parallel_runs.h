#pragma once
// Shared by the trainer tests under mpirun (CPU and CUDA): the grids a world allows, a small run for
// any of them, and the per-step record of a run (run directories every rank names alike: SharedScratch).
#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "dist/parallel_state.h"
#include "nn/tensor_parallel.h"
#include "trainer_fixtures.h"

namespace mgl::testing {

inline std::shared_ptr<dist::ParallelState> make_grid(const dist::GridSizes& sizes, const std::string& device) {
  dist::ParallelOptions o;
  o.sizes = sizes;
  o.timeout_s = 300;
  return dist::ParallelState::create(o, device);
}

// The tiny model with 4 heads (so that every size splits over up to 4 tensor ranks) on sequences of 128
// tokens in chunks of 16, so that up to 4 chunk ranks hold whole chunks, and a global batch of 4 that
// splits over up to 4 data ranks. No dropout: its masks are drawn per rank (docs/parallelism.md).
inline apps::RunConfig grid_run(int64_t steps, const dist::GridSizes& grid = {}, int64_t zero = 0,
                                const std::string& dtype = "auto") {
  apps::RunConfig c = small_run(steps);
  c.model.num_heads = 4;
  c.model.chunk_size = 16;
  c.model.dropout = c.model.hidden_dropout = c.model.attention_dropout = 0;
  c.schedule.warmup_steps = 2;
  c.train.dtype = dtype;
  c.parallel.data = grid.data;
  c.parallel.chunk = grid.chunk;
  c.parallel.tensor = grid.tensor;
  c.parallel.zero = zero;
  c.parallel.bucket_mb = 0.25;  // several buckets, so their ordering is exercised
  return c;
}

// Every grid data x chunk x tensor whose product is the world size; with 8 ranks (oversubscribed on
// two cores in CI) only the 3-D grid 2 x 2 x 2, the one the smaller worlds cannot reach.
inline std::vector<dist::GridSizes> grids(int world) {
  if (world == 8) return {{2, 2, 2}};
  std::vector<dist::GridSizes> out;
  for (int64_t d = 1; d <= world; ++d)
    for (int64_t c = 1; d * c <= world; ++c)
      if (world % (d * c) == 0) out.push_back({d, c, world / (d * c)});
  return out;
}

// The parameters (or their gradients) of a trainer's model, in f64 on the host: this rank's pieces
// under tensor parallelism.
inline std::vector<Tensor> host_f64(const apps::Trainer& t, bool gradients) {
  std::vector<Tensor> out;
  for (const nn::Parameter& p : t.model().named_parameters())
    out.push_back(cast(to(gradients ? p.tensor.grad() : p.tensor, Device::cpu()), DType::f64));
  return out;
}

// The pieces of a single-process run's tensors (host_f64 of a trainer without tensor parallelism) that
// `t`'s tensor rank holds.
inline std::vector<Tensor> pieces_for(const apps::Trainer& t, const std::vector<Tensor>& whole) {
  const nn::TensorParallel& tp = t.model().tensor_parallel();
  const std::vector<nn::Parameter> params = t.model().named_parameters();
  std::vector<Tensor> out;
  for (size_t k = 0; k < whole.size(); ++k) out.push_back(nn::piece_of(whole[k], params[k].sharding, tp.rank(), tp.size()));
  return out;
}

inline double relative_difference(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// The largest relative difference of `key` (loss, grad_norm, val_loss) over the steps two runs logged;
// fails the test when they logged different numbers of steps.
inline double worst_metric_difference(const std::filesystem::path& run, const std::filesystem::path& reference,
                                      const std::string& key) {
  auto values = [&](const std::filesystem::path& p) {
    std::vector<double> v;
    for (const auto& line : read_metrics(p))
      if (line.contains(key)) v.push_back(line[key].get<double>());
    return v;
  };
  const std::vector<double> got = values(run), want = values(reference);
  INFO(key << " of " << run << " against " << reference);
  REQUIRE(got.size() == want.size());
  REQUIRE(!got.empty());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, relative_difference(got[i], want[i]));
  return worst;
}

}  // namespace mgl::testing

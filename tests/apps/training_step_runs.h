#pragma once
// Shared by the TrainingStep tests (CPU and CUDA): a run of the tiny model on random tokens that reads the
// steps' results every `read_every` steps, counting the host's waits for the device around each step, and
// the check that non-finite steps change nothing.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "apps/lib/training_step.h"
#include "apps/trainer_fixtures.h"
#include "core/cuda_context.h"
#include "support/errors.h"

namespace mgl::testing {

// Four steps' worth of windows of uniform random tokens, cut into batches as a token shard would be.
inline apps::DataLoader random_token_loader(const apps::RunConfig& c) {
  std::mt19937_64 rng(static_cast<uint64_t>(c.train.seed));
  std::vector<uint32_t> tokens(4 * c.train.batch_size * c.train.seq_len + 1);
  for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng() % static_cast<uint64_t>(c.model.vocab_size));
  apps::DataLoaderOptions o;
  o.batch_size = c.train.batch_size;
  o.seq_len = c.train.seq_len;
  o.vocab_size = c.model.vocab_size;
  o.seed = static_cast<uint64_t>(c.train.seed);
  return apps::DataLoader(std::move(tokens), o, "random tokens");
}

// The tiny model's small run with a clipping norm below its gradient norms, so that every step clips.
inline apps::RunConfig clipped_run(int64_t steps) {
  apps::RunConfig c = small_run(steps);
  c.schedule.warmup_steps = 2;
  c.optimizer.clip_grad_norm = 0.05;
  return c;
}

struct StepRun {
  std::vector<apps::StepResult> results;  // every step's, in order
  std::vector<int64_t> waits_in_steps;    // host synchronisations inside each run() call
  std::vector<int64_t> waits_in_reads;    // host synchronisations of each read_results() call
  std::vector<std::vector<float>> parameters;  // after the last step
};

// `steps` steps of a fresh TrainingStep of config `c` on `device`, reading after every `read_every`
// steps and after the last.
inline StepRun run_steps(const apps::RunConfig& c, const Device& device, int64_t steps, int64_t read_every) {
  apps::TrainingStep step(c, dist::ParallelState::single_process(device));
  apps::DataLoader loader = random_token_loader(c);
  StepRun out;
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t before = host_synchronizations();
    step.run(i, [&loader] { return loader.next(); });
    out.waits_in_steps.push_back(host_synchronizations() - before);
    if ((i + 1) % read_every == 0 || i + 1 == steps) {
      const int64_t read_start = host_synchronizations();
      for (const apps::StepResult& r : step.read_results()) out.results.push_back(r);
      out.waits_in_reads.push_back(host_synchronizations() - read_start);
    }
  }
  for (const nn::Parameter& p : step.model().named_parameters()) out.parameters.push_back(p.tensor.to_vector<float>());
  return out;
}

// Two runs of the same steps give the same results and weights, bit for bit; every step is finite and
// clipped (its norm above max_norm).
inline void check_same_steps(const StepRun& a, const StepRun& b, size_t steps, double max_norm) {
  REQUIRE(a.results.size() == steps);
  REQUIRE(b.results.size() == steps);
  for (size_t i = 0; i < steps; ++i) {
    INFO("step " << i + 1);
    CHECK(a.results[i].step == static_cast<int64_t>(i + 1));
    CHECK(b.results[i].step == a.results[i].step);
    CHECK(b.results[i].loss == a.results[i].loss);
    CHECK(b.results[i].grad_norm == a.results[i].grad_norm);
    CHECK(b.results[i].lr == a.results[i].lr);
    CHECK(std::isfinite(a.results[i].loss));
    CHECK(a.results[i].grad_norm > max_norm);
  }
  CHECK(a.parameters == b.parameters);
}

// Step 1, then NaN embeddings: the loss, every gradient and the norm of steps 2 and 3 are NaN, AdamW skips
// their updates on the device (no weight changes; the host waits for nothing), and the read names step 2
// and the parameter.
inline void check_nonfinite_steps_change_nothing(const Device& device) {
  const apps::RunConfig c = clipped_run(3);
  apps::TrainingStep step(c, dist::ParallelState::single_process(device));
  apps::DataLoader loader = random_token_loader(c);
  const apps::BatchSource batches = [&loader] { return loader.next(); };
  step.run(0, batches);
  REQUIRE(step.read_results().size() == 1);
  const std::vector<nn::Parameter> parameters = step.model().named_parameters();
  const nn::Parameter& poisoned = parameters.front();
  REQUIRE(poisoned.name == "embed.weight");
  fill_(poisoned.tensor, std::numeric_limits<double>::quiet_NaN());
  std::vector<std::vector<float>> before;
  for (const nn::Parameter& p : parameters) before.push_back(p.tensor.to_vector<float>());
  const int64_t waits = host_synchronizations();
  step.run(1, batches);
  step.run(2, batches);
  CHECK(host_synchronizations() == waits);
  for (size_t i = 0; i < parameters.size(); ++i) {
    INFO(parameters[i].name);
    const std::vector<float> after = parameters[i].tensor.to_vector<float>();
    REQUIRE(after.size() == before[i].size());
    for (size_t k = 0; k < after.size(); ++k)
      CHECK((after[k] == before[i][k] || (std::isnan(after[k]) && std::isnan(before[i][k]))));
  }
  const std::string message = error_message([&] { step.read_results(); });
  INFO(message);
  CHECK(contains(message, "step 2: the loss is "));
  CHECK(contains(message, "because parameter 'embed.weight' holds NaN/inf"));
}

}  // namespace mgl::testing

// TrainingStep on CUDA: a step that logs nothing never makes the host wait for the GPU (the count of host
// synchronisations, core/cuda_context.h, does not move inside run()), one read of the results costs one
// synchronisation whatever the number of steps behind it, and reading every 4 steps gives the results
// and the weights of reading every step, bit for bit. NaN weights make steps that change nothing, and
// the read names them.
#include <algorithm>
#include <cmath>

#include "apps/training_step_runs.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("training step cuda: unlogged steps never wait for the GPU; one read per log", "[apps][training_step][cuda]") {
  const RunConfig c = clipped_run(8);
  const Device gpu = Device::cuda(0);
  const StepRun each = run_steps(c, gpu, 8, 1), grouped = run_steps(c, gpu, 8, 4);
  for (const StepRun* run : {&each, &grouped}) {
    // Not one synchronisation inside any step, the first included; one per read.
    CHECK(run->waits_in_steps == std::vector<int64_t>(8, 0));
    CHECK(std::all_of(run->waits_in_reads.begin(), run->waits_in_reads.end(), [](int64_t n) { return n == 1; }));
  }
  CHECK(grouped.waits_in_reads.size() == 2);
  check_same_steps(each, grouped, 8, c.optimizer.clip_grad_norm);
}

TEST_CASE("training step cuda: the first loss and norm agree with the CPU's", "[apps][training_step][cuda]") {
  RunConfig c = clipped_run(8);
  c.train.dtype = "f32";  // the same math on both sides, up to the order of the sums
  const StepRun gpu = run_steps(c, Device::cuda(0), 1, 1), cpu = run_steps(c, Device::cpu(), 1, 1);
  CHECK(std::abs(gpu.results[0].loss / cpu.results[0].loss - 1) < 1e-5);
  CHECK(std::abs(gpu.results[0].grad_norm / cpu.results[0].grad_norm - 1) < 1e-4);
}

TEST_CASE("training step cuda: a non-finite step changes no weight and the read names it", "[apps][training_step][cuda]") {
  check_nonfinite_steps_change_nothing(Device::cuda(0));
}

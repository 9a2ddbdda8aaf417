// TrainingStep (apps/lib/training_step.h) on the CPU: steps whose results are read later give the results
// and the weights of steps read one by one, bitwise; a step whose loss and gradients are not finite changes
// no weight, and the read reports it naming the step and the parameter.
#include "apps/training_step_runs.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

TEST_CASE("training step: results read every 3 steps equal those read every step", "[apps][training_step]") {
  const RunConfig c = clipped_run(6);
  const StepRun each = run_steps(c, Device::cpu(), 6, 1), grouped = run_steps(c, Device::cpu(), 6, 3);
  CHECK(grouped.waits_in_reads.size() == 2);
  check_same_steps(each, grouped, 6, c.optimizer.clip_grad_norm);
}

TEST_CASE("training step: a non-finite step changes no weight and the read names it", "[apps][training_step]") {
  check_nonfinite_steps_change_nothing(Device::cpu());
}

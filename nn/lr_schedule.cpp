#include "nn/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "base/error.h"

namespace mgl::nn {

LrDecay lr_decay_from_string(const std::string& name) {
  if (name == "constant") return LrDecay::constant;
  if (name == "linear") return LrDecay::linear;
  if (name == "cosine") return LrDecay::cosine;
  MGL_FAIL("learning-rate schedule: unknown decay '", name, "' (known: constant, linear, cosine)");
}

void LrSchedule::validate() const {
  MGL_CHECK(peak_lr >= 0, "learning-rate schedule: peak_lr must be >= 0, got ", peak_lr);
  MGL_CHECK(warmup_steps >= 0, "learning-rate schedule: warmup_steps must be >= 0, got ", warmup_steps);
  MGL_CHECK(total_steps >= 1, "learning-rate schedule: total_steps must be >= 1, got ", total_steps);
  MGL_CHECK(decay == LrDecay::constant || warmup_steps <= total_steps, "learning-rate schedule: warmup_steps (",
            warmup_steps, ") exceeds total_steps (", total_steps, ")");
  MGL_CHECK(init_ratio >= 0 && init_ratio <= 1, "learning-rate schedule: init_ratio must lie in [0, 1], got ",
            init_ratio);
  MGL_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "learning-rate schedule: min_lr_ratio must lie in [0, 1], got ",
            min_lr_ratio);
}

double LrSchedule::lr(int64_t step) const {
  validate();
  MGL_CHECK(step >= 0, "learning-rate schedule: step must be >= 0, got ", step);
  if (step < warmup_steps) {
    const double start = init_ratio * peak_lr;
    return start + (peak_lr - start) * static_cast<double>(step) / static_cast<double>(warmup_steps);
  }
  if (decay == LrDecay::constant) return peak_lr;
  const double floor = min_lr_ratio * peak_lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  if (step >= total_steps || decay_steps == 0) return floor;
  const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps);
  const double factor = decay == LrDecay::linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return floor + (peak_lr - floor) * factor;
}

}  // namespace mgl::nn

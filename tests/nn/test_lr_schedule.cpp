// nn/ learning-rate schedules: exact values at the boundaries of warmup and decay, the midpoint of each
// decay, the floor after the end, and bad settings.
#include <cmath>
#include <numbers>

#include "nn/lr_schedule.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

// Equal up to a few units in the last place (the formulas are evaluated in a different order here).
bool nearly(double got, double expected) { return std::abs(got - expected) <= 4e-16 * std::abs(expected); }

}  // namespace

TEST_CASE("lr schedule: warmup goes linearly from init_ratio * peak to the peak", "[nn][lr_schedule]") {
  for (const LrDecay decay : {LrDecay::constant, LrDecay::linear, LrDecay::cosine}) {
    const LrSchedule s{.decay = decay, .peak_lr = 1e-3, .warmup_steps = 10, .total_steps = 110, .init_ratio = 0.1,
                       .min_lr_ratio = 0.01};
    CHECK(nearly(s.lr(0), 1e-4));
    CHECK(nearly(s.lr(5), 1e-4 + 0.9e-3 * 0.5));
    CHECK(nearly(s.lr(9), 1e-4 + 0.9e-3 * 0.9));
    CHECK(nearly(s.lr(10), 1e-3));  // the first step after warmup uses the peak
  }
}

TEST_CASE("lr schedule: cosine decays to the floor and stays there", "[nn][lr_schedule]") {
  const LrSchedule s{.decay = LrDecay::cosine, .peak_lr = 2e-3, .warmup_steps = 4, .total_steps = 104,
                     .min_lr_ratio = 0.1};
  CHECK(s.lr(0) == 0.0);
  CHECK(nearly(s.lr(4), 2e-3));
  CHECK(nearly(s.lr(54), 2e-4 + 1.8e-3 * 0.5));  // u = 1/2: cos = 0
  CHECK(nearly(s.lr(29), 2e-4 + 1.8e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
  CHECK(s.lr(103) > 2e-4);
  CHECK(nearly(s.lr(104), 2e-4));
  CHECK(s.lr(1000000) == s.lr(104));
}

TEST_CASE("lr schedule: linear decay and constant", "[nn][lr_schedule]") {
  const LrSchedule linear{.decay = LrDecay::linear, .peak_lr = 1.0, .warmup_steps = 0, .total_steps = 8,
                          .min_lr_ratio = 0.5};
  CHECK(linear.lr(0) == 1.0);
  CHECK(linear.lr(2) == 0.875);
  CHECK(linear.lr(4) == 0.75);
  CHECK(linear.lr(8) == 0.5);
  CHECK(linear.lr(9) == 0.5);
  const LrSchedule constant{.decay = LrDecay::constant, .peak_lr = 0.25, .warmup_steps = 2, .total_steps = 3};
  CHECK(constant.lr(1) == 0.125);
  CHECK(constant.lr(2) == 0.25);
  CHECK(constant.lr(1000) == 0.25);
  // Warmup as long as the whole run: the decay never starts, the end is the floor.
  const LrSchedule all_warmup{.decay = LrDecay::cosine, .peak_lr = 1.0, .warmup_steps = 4, .total_steps = 4,
                              .min_lr_ratio = 0.2};
  CHECK(all_warmup.lr(3) == 0.75);
  CHECK(all_warmup.lr(4) == 0.2);
}

TEST_CASE("lr schedule: names and bad settings", "[nn][lr_schedule]") {
  CHECK(lr_decay_from_string("cosine") == LrDecay::cosine);
  CHECK(lr_decay_from_string("linear") == LrDecay::linear);
  CHECK(lr_decay_from_string("constant") == LrDecay::constant);
  CHECK(contains(error_message([] { (void)lr_decay_from_string("step"); }), "unknown decay 'step'"));
  CHECK(contains(error_message([] { (void)(LrSchedule{.warmup_steps = 5, .total_steps = 3}.lr(0)); }), "exceeds total_steps"));
  CHECK(contains(error_message([] { (void)(LrSchedule{.min_lr_ratio = 2}.lr(0)); }), "min_lr_ratio"));
  CHECK(contains(error_message([] { (void)(LrSchedule{.peak_lr = -1}.lr(0)); }), "peak_lr"));
  CHECK_THROWS_AS(LrSchedule{}.lr(-1), mgl::Error);
}

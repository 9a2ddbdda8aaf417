// nn/ AdamW on the CPU against a reference loop written here in f64 from the formulas of
// torch.optim.AdamW, over several steps; decoupled weight decay; skipped parameters; steps skipped for a
// non-finite norm; bad options.
#include <cmath>
#include <limits>

#include "nn/adamw.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

// torch.optim.AdamW for one parameter, in f64.
struct ReferenceAdamW {
  AdamWOptions o;
  std::vector<double> p, m, v;
  int64_t t = 0;

  ReferenceAdamW(const AdamWOptions& options, std::vector<double> initial)
      : o(options), p(std::move(initial)), m(p.size(), 0.0), v(p.size(), 0.0) {}

  void step(const std::vector<double>& g) {
    ++t;
    const double bias_correction1 = 1 - std::pow(o.beta1, static_cast<double>(t));
    const double bias_correction2 = 1 - std::pow(o.beta2, static_cast<double>(t));
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      p[i] -= o.lr / bias_correction1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bias_correction2) + o.eps);
    }
  }
};

}  // namespace

TEST_CASE("AdamW (CPU) follows the f64 reference over several steps", "[nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const AdamWOptions options{.lr = 1e-2, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1};
  const Tensor w = random_tensor({7, 33}, seed, DType::f32, -2.0, 2.0).set_requires_grad(true);
  const Tensor b = random_tensor({33}, seed + 1, DType::f32, -2.0, 2.0).set_requires_grad(true);
  AdamW optimizer({{"w", w}, {"b", b}}, options);
  ReferenceAdamW ref_w(options, w.to_vector<double>()), ref_b(options, b.to_vector<double>());
  for (int step = 1; step <= 6; ++step) {
    INFO("step " << step);
    // Fresh gradients each step, some steps much larger than others.
    const double scale = step % 3 == 0 ? 100.0 : 0.01;
    const Tensor gw = random_tensor({7, 33}, seed + 10 * step, DType::f32, -scale, scale);
    const Tensor gb = random_tensor({33}, seed + 10 * step + 1, DType::f32, -scale, scale);
    w.set_grad(gw);
    b.set_grad(gb);
    optimizer.step();
    ref_w.step(gw.to_vector<double>());
    ref_b.step(gb.to_vector<double>());
    CHECK(optimizer.step_count(0) == step);
    CHECK(relative_error(w.to_vector<double>(), ref_w.p) < 1e-6);
    CHECK(relative_error(b.to_vector<double>(), ref_b.p) < 1e-6);
    CHECK(relative_error(optimizer.exp_avg(0).to_vector<double>(), ref_w.m) < 1e-6);
    CHECK(relative_error(optimizer.exp_avg_sq(0).to_vector<double>(), ref_w.v) < 1e-6);
    CHECK(relative_error(optimizer.exp_avg(1).to_vector<double>(), ref_b.m) < 1e-6);
    CHECK(relative_error(optimizer.exp_avg_sq(1).to_vector<double>(), ref_b.v) < 1e-6);
  }
  // A learning-rate schedule changes options().lr between steps.
  optimizer.options().lr = 3e-3;
  ref_w.o.lr = 3e-3;
  const Tensor g = random_tensor({7, 33}, seed + 99, DType::f32);
  w.set_grad(g);
  b.set_grad(Tensor());
  optimizer.step();
  ref_w.step(g.to_vector<double>());
  CHECK(relative_error(w.to_vector<double>(), ref_w.p) < 1e-6);
  CHECK(optimizer.step_count(1) == 6);  // b had no gradient: not updated, its step count unchanged
  CHECK(relative_error(b.to_vector<double>(), ref_b.p) < 1e-6);
}

TEST_CASE("AdamW: weight decay is decoupled from the gradient statistics", "[nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const AdamWOptions options{.lr = 0.05, .weight_decay = 0.5};
  const Tensor p = random_tensor({100}, seed, DType::f32, 0.5, 2.0).set_requires_grad(true);
  const std::vector<double> initial = p.to_vector<double>();
  AdamW optimizer({{"p", p}}, options);
  // With a zero gradient the only change is p <- p (1 - lr wd): nothing enters the moments, so
  // no Adam step is taken (an L2 penalty added to the gradient would be normalised into a step
  // of about lr per element instead).
  const int steps = 5;
  for (int step = 0; step < steps; ++step) {
    p.set_grad(Tensor::zeros({100}));
    optimizer.step();
  }
  const double factor = std::pow(1 - options.lr * options.weight_decay, steps);
  const std::vector<double> got = p.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - initial[i] * factor) <= 1e-6 * initial[i]);
  CHECK(optimizer.exp_avg(0).to_vector<double>() == std::vector<double>(100, 0.0));
  CHECK(optimizer.exp_avg_sq(0).to_vector<double>() == std::vector<double>(100, 0.0));
  // Without decay, the same steps change nothing.
  const Tensor q = Tensor::full({4}, 1.5).set_requires_grad(true);
  AdamW plain({{"q", q}}, AdamWOptions{.weight_decay = 0.0});
  q.set_grad(Tensor::zeros({4}));
  plain.step();
  CHECK(q.to_vector<float>() == std::vector<float>(4, 1.5f));
}

TEST_CASE("AdamW: zero_grad, and the first step's size is lr whatever the gradient's scale", "[nn][adamw]") {
  // At t = 1, m / sqrt(v) after bias correction is sign(g) (for |g| >> eps): the step is lr.
  const Tensor p = Tensor::zeros({3}).set_requires_grad(true);
  AdamW optimizer({{"p", p}}, AdamWOptions{.lr = 0.1, .weight_decay = 0.0});
  p.set_grad(Tensor::from_vector<float>({0.5f, -50.0f, 2.0f}, {3}));
  optimizer.step();
  const std::vector<float> got = p.to_vector<float>();
  CHECK(std::abs(got[0] + 0.1f) < 1e-6f);
  CHECK(std::abs(got[1] - 0.1f) < 1e-6f);
  CHECK(std::abs(got[2] + 0.1f) < 1e-6f);
  optimizer.zero_grad();
  CHECK_FALSE(p.grad().defined());
}

TEST_CASE("AdamW: a non-finite norm skips the update; a finite one does not", "[nn][adamw]") {
  const Tensor p = Tensor::from_vector<float>({1.0f, -2.0f, 3.0f}, {3}).set_requires_grad(true);
  AdamW optimizer({{"p", p}}, AdamWOptions{.lr = 0.1});
  p.set_grad(Tensor::from_vector<float>({0.5f, -0.5f, 2.0f}, {3}));
  for (const double norm : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    optimizer.step_unless_nonfinite(Tensor::full({1}, norm, DType::f64));
    CHECK(p.to_vector<float>() == std::vector<float>{1.0f, -2.0f, 3.0f});
    CHECK(optimizer.exp_avg(0).to_vector<float>() == std::vector<float>(3, 0.0f));
  }
  CHECK(optimizer.step_count(0) == 2);  // the host's count advances either way
  // A finite norm: the update step() makes at step 3 from untouched moments.
  const Tensor q = Tensor::from_vector<float>({1.0f, -2.0f, 3.0f}, {3}).set_requires_grad(true);
  AdamW reference({{"q", q}}, AdamWOptions{.lr = 0.1});
  q.set_grad(p.grad());
  reference.set_state(0, 2, Tensor::zeros({3}), Tensor::zeros({3}));
  optimizer.step_unless_nonfinite(Tensor::full({1}, 4.0, DType::f64));
  reference.step();
  CHECK(p.to_vector<float>() != std::vector<float>{1.0f, -2.0f, 3.0f});
  CHECK(p.to_vector<float>() == q.to_vector<float>());
}

TEST_CASE("AdamW: bad options and parameters are refused", "[nn][adamw]") {
  const Tensor p = Tensor::zeros({3}).set_requires_grad(true);
  CHECK(contains(error_message([&] { AdamW({{"p", p}}, AdamWOptions{.lr = -1.0}); }), "learning rate must be >= 0"));
  CHECK(contains(error_message([&] { AdamW({{"p", p}}, AdamWOptions{.beta2 = 1.0}); }), "betas must lie in [0, 1)"));
  CHECK(contains(error_message([&] { AdamW({{"p", p}}, AdamWOptions{.eps = -1e-8}); }), "eps must be >= 0"));
  CHECK(contains(error_message([&] { AdamW({{"p", p}}, AdamWOptions{.weight_decay = -0.1}); }),
                 "weight decay must be >= 0"));
  const Tensor half = Tensor::zeros({3}, DType::bf16).set_requires_grad(true);
  CHECK(contains(error_message([&] { AdamW({{"half", half}}); }), "parameter 'half' is bf16[3] on cpu"));
  CHECK(contains(error_message([&] { AdamW({{"frozen", Tensor::zeros({3})}}); }),
                 "parameter 'frozen' (f32[3] on cpu) is not a leaf that requires grad"));
  AdamW optimizer({{"p", p}});
  p.set_grad(Tensor::zeros({3}, DType::f64));
  CHECK(contains(error_message([&] { optimizer.step(); }), "gradient of 'p' is f64[3] on cpu"));
  optimizer.options().beta1 = 1.5;  // options are checked again at each step
  p.set_grad(Tensor::zeros({3}));
  CHECK(contains(error_message([&] { optimizer.step(); }), "betas must lie in [0, 1)"));
}

TEST_CASE("AdamW: weight-decay exemptions by name, state by name", "[nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  AdamWOptions options{.lr = 1e-2, .weight_decay = 0.5};
  options.no_weight_decay = [](const std::string& name) { return name.ends_with(".bias"); };
  const Tensor w = random_tensor({4, 3}, seed, DType::f32, -2.0, 2.0).set_requires_grad(true);
  const Tensor b = random_tensor({3}, seed + 1, DType::f32, -2.0, 2.0).set_requires_grad(true);
  AdamW optimizer({{"fc.weight", w}, {"fc.bias", b}}, options);
  CHECK(optimizer.decays(0));
  CHECK_FALSE(optimizer.decays(1));
  CHECK(optimizer.index_of("fc.bias") == 1);
  CHECK(contains(error_message([&] { (void)optimizer.index_of("fc.scale"); }), "no parameter named 'fc.scale'"));
  AdamWOptions decayed = options, exempt = options;
  exempt.weight_decay = 0;
  ReferenceAdamW ref_w(decayed, w.to_vector<double>()), ref_b(exempt, b.to_vector<double>());
  for (int step = 1; step <= 3; ++step) {
    const Tensor gw = random_tensor({4, 3}, seed + 10 * step, DType::f32);
    const Tensor gb = random_tensor({3}, seed + 10 * step + 1, DType::f32);
    w.set_grad(gw);
    b.set_grad(gb);
    optimizer.step();
    ref_w.step(gw.to_vector<double>());
    ref_b.step(gb.to_vector<double>());
  }
  CHECK(relative_error(w.to_vector<double>(), ref_w.p) < 1e-6);
  CHECK(relative_error(b.to_vector<double>(), ref_b.p) < 1e-6);

  // set_state restores step and moments; a wrong shape is named.
  AdamW fresh({{"fc.weight", w}, {"fc.bias", b}}, options);
  fresh.set_state(1, optimizer.step_count(1), optimizer.exp_avg(1), optimizer.exp_avg_sq(1));
  CHECK(fresh.step_count(1) == 3);
  CHECK(fresh.exp_avg(1).to_vector<double>() == optimizer.exp_avg(1).to_vector<double>());
  CHECK(fresh.exp_avg_sq(1).to_vector<double>() == optimizer.exp_avg_sq(1).to_vector<double>());
  CHECK(contains(error_message([&] { fresh.set_state(0, 1, Tensor::zeros({3}), Tensor::zeros({3})); }),
                 "state of 'fc.weight' has shape"));
}

// TimestepNorm on the CPU: finite-difference gradients (including those reaching the outgoing state
// and the incoming one), the forward against brute-force cumulative statistics, chunked processing
// with a carried state, causality, padding, and bad inputs.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "ops/timestep_norm.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

constexpr double kEps = 1e-5;

struct Problem {
  int64_t B, L, D, G;
  Tensor x, weight, bias;
  TimestepNormState state;  // a random incoming state (count > 0 unless asked otherwise)
};

// x in [-1, 1) shifted by 0.3, weight (applied as weight + 1) and bias small, incoming mean in
// [-0.5, 0.5), variance in [0.5, 1.5), counts given.
Problem make_problem(int64_t B, int64_t L, int64_t D, int64_t G, const std::vector<int64_t>& counts, uint64_t seed,
                     DType dtype = DType::f64) {
  Problem p{B, L, D, G, {}, {}, {}, {}};
  p.x = add(random_tensor({B, L, D}, seed, DType::f64), 0.3);
  p.weight = random_tensor({D}, seed + 1, DType::f64, -0.5, 0.5);
  p.bias = random_tensor({D}, seed + 2, DType::f64, -0.5, 0.5);
  p.state.count = Tensor::from_vector(counts, {B});
  p.state.mean = random_tensor({B, G}, seed + 3, DType::f64, -0.5, 0.5);
  p.state.var = random_tensor({B, G}, seed + 4, DType::f64, 0.5, 1.5);
  if (dtype != DType::f64) {
    p.x = cast(p.x, dtype);
    p.weight = cast(p.weight, dtype);
    p.bias = cast(p.bias, dtype);
    p.state.mean = cast(p.state.mean, timestep_norm_state_dtype(dtype));
    p.state.var = cast(p.state.var, timestep_norm_state_dtype(dtype));
  }
  return p;
}

std::vector<Tensor> all_outputs(const TimestepNormOutput& out) { return {out.y, out.state.mean, out.state.var}; }

// Largest |a - b| over two tensors of the same shape.
double max_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  double worst = 0.0;
  for (size_t i = 0; i < va.size(); ++i) worst = std::max(worst, std::abs(va[i] - vb[i]));
  return worst;
}

void require_leaf(Tensor& t) { t = t.detach().set_requires_grad(true); }

// gradcheck of y and the outgoing state with respect to x, weight, bias and the incoming mean and
// variance of p.state (its count is held fixed).
void check_all_gradients(Problem p, const Tensor& mask = {}) {
  for (Tensor* t : {&p.x, &p.weight, &p.bias, &p.state.mean, &p.state.var}) require_leaf(*t);
  check_gradients_multi(
      [&](const std::vector<Tensor>& in) {
        const TimestepNormState state{in[5], in[3], in[4]};
        return all_outputs(timestep_norm(in[0], in[1], in[2], p.G, &state, kEps, mask));
      },
      {p.x, p.weight, p.bias, p.state.mean, p.state.var, p.state.count});
}

// Runs f, expecting an mgl::Error whose message names the op and contains `fragment`.
void check_error(const std::function<void()>& f, const std::string& fragment) {
  CHECK_THROWS_AS(f(), Error);
  try {
    f();
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find("timestep_norm") != std::string::npos);
    CHECK(message.find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("timestep_norm: gradients of x, weight, bias and the incoming state", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // The outputs include the outgoing state, so gradients also flow in from there.
  check_all_gradients(make_problem(2, 5, 6, 2, {3, 1}, seed));
}

TEST_CASE("timestep_norm: gradients from a fresh state", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Problem p = make_problem(2, 4, 8, 4, {0, 0}, seed);
  for (Tensor* t : {&p.x, &p.weight, &p.bias}) require_leaf(*t);
  check_gradients_multi(
      [&](const std::vector<Tensor>& in) { return all_outputs(timestep_norm(in[0], in[1], in[2], p.G, nullptr, kEps)); },
      {p.x, p.weight, p.bias});
  // An explicit state of count 0: its mean and variance get no gradient (they affect nothing).
  check_all_gradients(p);
}

TEST_CASE("timestep_norm: gradients when only the outgoing state is used", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Problem p = make_problem(1, 4, 4, 2, {2}, seed);
  for (Tensor* t : {&p.x, &p.state.mean, &p.state.var}) require_leaf(*t);
  check_gradients_multi(
      [&](const std::vector<Tensor>& in) {
        const TimestepNormState state{in[3], in[1], in[2]};
        const TimestepNormOutput out = timestep_norm(in[0], p.weight, p.bias, p.G, &state, kEps);
        return std::vector<Tensor>{out.state.mean, out.state.var};
      },
      {p.x, p.state.mean, p.state.var, p.state.count});
}

TEST_CASE("timestep_norm: gradients with a padding mask", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Sequence 0 starts padded at count 0 (the prior must pass through); sequence 1 ends padded.
  const Tensor mask = Tensor::from_vector<int32_t>({1, 0, 1, 1, 0, 0, 0, 1, 0, 1}, {2, 5});
  for (const std::vector<int64_t>& counts : {std::vector<int64_t>{0, 0}, std::vector<int64_t>{2, 4}})
    check_all_gradients(make_problem(2, 5, 6, 3, counts, seed), mask);
}

TEST_CASE("timestep_norm: an empty sequence passes the state through", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Problem p = make_problem(2, 0, 4, 2, {3, 0}, seed);
  for (Tensor* t : {&p.x, &p.state.mean, &p.state.var}) require_leaf(*t);
  const TimestepNormOutput out = timestep_norm(p.x, p.weight, p.bias, p.G, &p.state, kEps);
  CHECK(out.y.shape() == Shape({2, 0, 4}));
  CHECK(out.state.count.to_vector<int64_t>() == std::vector<int64_t>{3, 0});
  CHECK(max_difference(out.state.mean, p.state.mean) == 0.0);
  CHECK(max_difference(out.state.var, p.state.var) == 0.0);
  check_gradients_multi(
      [&](const std::vector<Tensor>& in) {
        const TimestepNormState state{in[3], in[1], in[2]};
        return all_outputs(timestep_norm(in[0], p.weight, p.bias, p.G, &state, kEps));
      },
      {p.x, p.state.mean, p.state.var, p.state.count});
}

TEST_CASE("timestep_norm: forward equals brute-force cumulative statistics", "[ops][timestep_norm]") {
  const int64_t B = 2, L = 9, D = 8, G = 2, dg = D / G;
  for (const std::vector<int64_t>& counts : {std::vector<int64_t>{0, 0}, std::vector<int64_t>{5, 2}}) {
    const uint64_t seed = fresh_seed();
    INFO("seed " << seed << " incoming counts " << counts[0] << ", " << counts[1]);
    const Problem p = make_problem(B, L, D, G, counts, seed);
    const TimestepNormOutput out = timestep_norm(p.x, p.weight, p.bias, G, &p.state, kEps);
    const std::vector<double> x = p.x.to_vector<double>(), w = p.weight.to_vector<double>(),
                              bias = p.bias.to_vector<double>(), mean0 = p.state.mean.to_vector<double>(),
                              var0 = p.state.var.to_vector<double>(), y = out.y.to_vector<double>();
    double worst = 0.0, mean_last = 0.0, var_last = 0.0;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t g = 0; g < G; ++g) {
        // The incoming state stands for counts[b] * dg earlier values with mean mean0 and variance var0.
        const double prior = static_cast<double>(counts[b] * dg);
        for (int64_t t = 0; t < L; ++t) {
          double total = prior * mean0[b * G + g];
          for (int64_t s = 0; s <= t; ++s)
            for (int64_t k = 0; k < dg; ++k) total += x[(b * L + s) * D + g * dg + k];
          const double n = prior + static_cast<double>((t + 1) * dg), mean = total / n;
          double squares = prior * (var0[b * G + g] + (mean0[b * G + g] - mean) * (mean0[b * G + g] - mean));
          for (int64_t s = 0; s <= t; ++s)
            for (int64_t k = 0; k < dg; ++k) squares += std::pow(x[(b * L + s) * D + g * dg + k] - mean, 2);
          const double var = squares / n;
          for (int64_t k = 0; k < dg; ++k) {
            const int64_t c = g * dg + k, i = (b * L + t) * D + c;
            const double expected = (x[i] - mean) / std::sqrt(var + kEps) * (w[c] + 1.0) + bias[c];
            worst = std::max(worst, std::abs(y[i] - expected));
          }
          mean_last = mean;
          var_last = var;
        }
        CHECK(std::abs(out.state.mean.to_vector<double>()[b * G + g] - mean_last) < 1e-12);
        CHECK(std::abs(out.state.var.to_vector<double>()[b * G + g] - var_last) < 1e-12);
      }
    }
    CHECK(worst < 1e-12);
    CHECK(out.state.count.to_vector<int64_t>() == std::vector<int64_t>{counts[0] + L, counts[1] + L});
  }
}

TEST_CASE("timestep_norm: the prior with count 0 has no effect; nullptr is that prior", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Problem p = make_problem(2, 6, 6, 3, {0, 0}, seed);
  const TimestepNormOutput with_prior = timestep_norm(p.x, p.weight, p.bias, p.G, &p.state, kEps);
  const TimestepNormOutput fresh = timestep_norm(p.x, p.weight, p.bias, p.G, nullptr, kEps);
  const TimestepNormState initial = timestep_norm_initial_state(2, 3, DType::f64);
  CHECK(initial.count.to_vector<int64_t>() == std::vector<int64_t>{0, 0});
  CHECK(initial.mean.to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(initial.var.to_vector<double>() == std::vector<double>(6, 1.0));
  CHECK(max_difference(with_prior.y, fresh.y) == 0.0);
  CHECK(max_difference(with_prior.state.mean, fresh.state.mean) == 0.0);
  CHECK(max_difference(with_prior.state.var, fresh.state.var) == 0.0);
}

TEST_CASE("timestep_norm: [0, L) in one call equals [0, L1) then [L1, L) with the carried state",
          "[ops][timestep_norm]") {
  const int64_t B = 2, L = 11, D = 6, G = 3;
  for (int64_t L1 : {int64_t{0}, int64_t{4}, int64_t{10}, L}) {
    const uint64_t seed = fresh_seed();
    INFO("seed " << seed << " split at " << L1);
    const Problem p = make_problem(B, L, D, G, {4, 1}, seed);
    // One random projection of every output defines the loss of both runs.
    const Tensor wy = random_tensor({B, L, D}, seed + 10), wm = random_tensor({B, G}, seed + 11),
                 wv = random_tensor({B, G}, seed + 12);
    auto leaves = [&]() {
      std::vector<Tensor> in = {p.x, p.weight, p.bias, p.state.mean, p.state.var};
      for (Tensor& t : in) require_leaf(t);
      return in;
    };
    std::vector<Tensor> whole = leaves(), split = leaves();

    const TimestepNormState state_w{p.state.count, whole[3], whole[4]};
    const TimestepNormOutput out = timestep_norm(whole[0], whole[1], whole[2], G, &state_w, kEps);
    backward(sum(out.y * wy) + sum(out.state.mean * wm) + sum(out.state.var * wv));

    const TimestepNormState state_s{p.state.count, split[3], split[4]};
    const TimestepNormOutput first = timestep_norm(slice(split[0], 1, 0, L1), split[1], split[2], G, &state_s, kEps);
    const TimestepNormOutput second = timestep_norm(slice(split[0], 1, L1, L), split[1], split[2], G, &first.state, kEps);
    backward(sum(first.y * slice(wy, 1, 0, L1)) + sum(second.y * slice(wy, 1, L1, L)) +
             sum(second.state.mean * wm) + sum(second.state.var * wv));

    CHECK(max_difference(slice(out.y, 1, 0, L1), first.y) < 1e-12);
    CHECK(max_difference(slice(out.y, 1, L1, L), second.y) < 1e-12);
    CHECK(out.state.count.to_vector<int64_t>() == second.state.count.to_vector<int64_t>());
    CHECK(max_difference(out.state.mean, second.state.mean) < 1e-12);
    CHECK(max_difference(out.state.var, second.state.var) < 1e-12);
    for (size_t k = 0; k < whole.size(); ++k) {
      INFO("gradient of input " << k);
      CHECK(max_difference(whole[k].grad(), split[k].grad()) < 1e-10);
    }
  }
}

TEST_CASE("timestep_norm: causal (changing step t changes no earlier output)", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t B = 2, L = 8, D = 4, G = 2, t0 = 5;
  const Problem p = make_problem(B, L, D, G, {3, 0}, seed);
  // Replace step t0 by other values.
  std::vector<double> changed = p.x.to_vector<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < D; ++k) changed[(b * L + t0) * D + k] += 0.5 + 0.1 * static_cast<double>(k);
  const Tensor x2 = Tensor::from_vector(changed, {B, L, D});
  const Tensor y1 = timestep_norm(p.x, p.weight, p.bias, G, &p.state, kEps).y;
  const Tensor y2 = timestep_norm(x2, p.weight, p.bias, G, &p.state, kEps).y;
  CHECK(max_difference(slice(y1, 1, 0, t0), slice(y2, 1, 0, t0)) == 0.0);
  for (int64_t t = t0; t < L; ++t) {
    INFO("step " << t);
    CHECK(max_difference(slice(y1, 1, t, t + 1), slice(y2, 1, t, t + 1)) > 1e-6);
  }
}

TEST_CASE("timestep_norm: padded steps output zeros and leave the state alone", "[ops][timestep_norm]") {
  const int64_t B = 2, L = 7, D = 6, G = 2;
  const std::vector<int32_t> padded = {1, 0, 0, 1, 1, 0, 0,   // starts padded at count 0
                                       0, 1, 0, 0, 0, 1, 1};  // ends padded
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Problem p = make_problem(B, L, D, G, {0, 3}, seed);
  require_leaf(p.x);
  const Tensor mask = Tensor::from_vector(padded, {B, L});
  const TimestepNormOutput out = timestep_norm(p.x, p.weight, p.bias, G, &p.state, kEps, mask);
  backward(sum(out.y * random_tensor({B, L, D}, seed + 5)) + sum(out.state.mean) + sum(out.state.var));

  const std::vector<double> x = p.x.to_vector<double>(), y = out.y.to_vector<double>(), dx = p.x.grad().to_vector<double>();
  const std::vector<int64_t> counts = {0, 3};
  for (int64_t b = 0; b < B; ++b) {
    INFO("sequence " << b);
    // The same sequence with its padded steps removed, run on its own.
    std::vector<double> kept;
    std::vector<int64_t> kept_steps;
    for (int64_t t = 0; t < L; ++t) {
      if (padded[b * L + t]) {
        for (int64_t k = 0; k < D; ++k) {
          CHECK(y[(b * L + t) * D + k] == 0.0);
          CHECK(dx[(b * L + t) * D + k] == 0.0);
        }
        continue;
      }
      kept_steps.push_back(t);
      for (int64_t k = 0; k < D; ++k) kept.push_back(x[(b * L + t) * D + k]);
    }
    const int64_t n = static_cast<int64_t>(kept_steps.size());
    const TimestepNormState alone{Tensor::from_vector<int64_t>({counts[b]}, {1}), slice(p.state.mean, 0, b, b + 1),
                                  slice(p.state.var, 0, b, b + 1)};
    const TimestepNormOutput ref =
        timestep_norm(Tensor::from_vector(kept, {1, n, D}), p.weight, p.bias, G, &alone, kEps);
    const std::vector<double> y_ref = ref.y.to_vector<double>();
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < D; ++k) worst = std::max(worst, std::abs(y[(b * L + kept_steps[i]) * D + k] - y_ref[i * D + k]));
    CHECK(worst < 1e-12);
    CHECK(out.state.count.to_vector<int64_t>()[b] == counts[b] + n);
    CHECK(max_difference(slice(out.state.mean, 0, b, b + 1), ref.state.mean) < 1e-12);
    CHECK(max_difference(slice(out.state.var, 0, b, b + 1), ref.state.var) < 1e-12);
  }
}

TEST_CASE("timestep_norm: a padding mask of any dtype, non-zero = padded", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Problem p = make_problem(1, 5, 4, 2, {2}, seed);
  const Tensor reference =
      timestep_norm(p.x, p.weight, p.bias, p.G, &p.state, kEps, Tensor::from_vector<int64_t>({0, 1, 0, 1, 1}, {1, 5})).y;
  for (DType dtype : {DType::i32, DType::f32, DType::bf16, DType::f64}) {
    INFO(dtype_name(dtype));
    const double last = is_integer(dtype) ? 3.0 : 0.5;  // any non-zero value pads
    const Tensor mask = Tensor::from_vector<double>({0, 2, 0, -1, last}, {1, 5}, dtype);
    CHECK(max_difference(timestep_norm(p.x, p.weight, p.bias, p.G, &p.state, kEps, mask).y, reference) == 0.0);
  }
}

TEST_CASE("timestep_norm: f32 and bf16 inputs carry an f32 state", "[ops][timestep_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Problem ref = make_problem(2, 6, 8, 2, {3, 0}, seed);
  const TimestepNormOutput expected = timestep_norm(ref.x, ref.weight, ref.bias, ref.G, &ref.state, kEps);
  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    const Problem p = make_problem(2, 6, 8, 2, {3, 0}, seed, dtype);
    const TimestepNormOutput out = timestep_norm(p.x, p.weight, p.bias, p.G, &p.state, kEps);
    CHECK(out.y.dtype() == dtype);
    CHECK(out.state.mean.dtype() == DType::f32);
    CHECK(out.state.var.dtype() == DType::f32);
    CHECK(relative_error(out.y, expected.y) < tolerance_for(dtype));
    CHECK(relative_error(out.state.mean, expected.state.mean) < tolerance_for(dtype));
    CHECK(relative_error(out.state.var, expected.state.var) < tolerance_for(dtype));
  }
}

TEST_CASE("timestep_norm: bad inputs throw clear errors", "[ops][timestep_norm]") {
  const Problem p = make_problem(2, 3, 6, 2, {1, 0}, fresh_seed());
  auto run = [&](const Tensor& x, const Tensor& w, const Tensor& b, int64_t groups, const TimestepNormState& s,
                 double eps = kEps, const Tensor& mask = {}) { timestep_norm(x, w, b, groups, &s, eps, mask); };
  const TimestepNormState& s = p.state;
  check_error([&] { run(reshape(p.x, {6, 6}), p.weight, p.bias, 2, s); }, "[B, L, D]");
  check_error([&] { run(p.x, p.weight, p.bias, 4, s); }, "divisible");
  check_error([&] { run(p.x, p.weight, p.bias, 0, s); }, "groups");
  check_error([&] { run(p.x, Tensor::zeros({5}, DType::f64), p.bias, 2, s); }, "weight");
  check_error([&] { run(p.x, Tensor(), p.bias, 2, s); }, "weight");
  check_error([&] { run(p.x, p.weight, cast(p.bias, DType::f32), 2, s); }, "dtype");
  check_error([&] { run(p.x, p.weight, p.bias, 2, {s.count, Tensor::zeros({2, 3}, DType::f64), s.var}); }, "mean");
  check_error([&] { run(p.x, p.weight, p.bias, 2, {s.count, s.mean, cast(s.var, DType::f32)}); }, "var");
  check_error([&] { run(p.x, p.weight, p.bias, 2, {cast(s.count, DType::i32), s.mean, s.var}); }, "count");
  check_error([&] { run(p.x, p.weight, p.bias, 2, {Tensor::from_vector<int64_t>({1, -2}, {2}), s.mean, s.var}); },
              "negative");
  check_error([&] { run(p.x, p.weight, p.bias, 2, s, -1.0); }, "eps");
  check_error([&] { run(p.x, p.weight, p.bias, 2, s, kEps, Tensor::zeros({2, 4}, DType::i32)); }, "padding_mask");
  // An f32 input needs an f32 state, not f64.
  const Problem f32 = make_problem(2, 3, 6, 2, {1, 0}, fresh_seed(), DType::f32);
  check_error([&] { run(f32.x, f32.weight, f32.bias, 2, s); }, "f32");
}

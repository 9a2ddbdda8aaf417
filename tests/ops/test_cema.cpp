// CEMA (ops/cema.h) on the CPU: finite-difference gradients of every input (from y and from
// h_out), the recurrence against the convolution form of docs/megalodon.md §2.3.3 and against
// the one-token step, a sequence split in two with carried state, causality, dtypes, and bad inputs.
#include <cmath>
#include <complex>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "ops/cema.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

struct Inputs {
  Tensor x, alpha, delta, theta, gamma, omega, h_in;
  std::vector<Tensor> list() const { return {x, alpha, delta, theta, gamma, omega, h_in}; }
};

// Random raw parameters in ranges seen in training (|q| between about 0.3 and 0.95), random x
// and (optionally) a random incoming state; f64 leaves that require grad.
Inputs random_inputs(int64_t B, int64_t L, int64_t D, int64_t N, uint64_t seed, bool with_state) {
  auto leaf = [](Tensor t) { return t.set_requires_grad(true); };
  Inputs in;
  in.x = leaf(random_tensor({B, L, D}, seed, DType::f64));
  in.alpha = leaf(random_tensor({D, N, 1}, seed + 1, DType::f64, -1.5, 1.5));
  in.delta = leaf(random_tensor({D, N, 1}, seed + 2, DType::f64, -1.5, 1.5));
  in.theta = leaf(random_tensor({D, 1, 1}, seed + 3, DType::f64, -2.0, 2.0));
  in.gamma = leaf(random_tensor({D, N, 2}, seed + 4, DType::f64));
  in.omega = leaf(random_tensor({D, 1}, seed + 5, DType::f64));
  if (with_state) in.h_in = leaf(random_tensor({B, D, N, 2}, seed + 6, DType::f64));
  return in;
}

CemaOutput run(const std::vector<Tensor>& in, bool return_state) {
  return cema(in[0], in[1], in[2], in[3], in[4], in[5], in[6], return_state);
}

std::vector<Tensor> y_and_state(const std::vector<Tensor>& in) {
  const CemaOutput out = run(in, true);
  return {out.y, out.h_out};
}

// A fresh leaf with the same values (so two computations accumulate into separate .grad).
Tensor fresh_leaf(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor copy = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_(copy, t);
  return copy.set_requires_grad(true);
}
std::vector<Tensor> fresh_leaves(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(fresh_leaf(t));
  return out;
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> u = a.to_vector<double>(), v = b.to_vector<double>();
  double worst = 0.0;
  for (size_t i = 0; i < u.size(); ++i) worst = std::max(worst, std::abs(u[i] - v[i]));
  return worst;
}

// Throws mgl::Error with every fragment in its message.
template <class F>
void check_error(F&& f, const std::vector<std::string>& fragments) {
  REQUIRE_THROWS_AS(f(), Error);
  try {
    f();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments) {
      INFO("message: " << message << "\nexpected to contain: " << fragment);
      CHECK(message.find(fragment) != std::string::npos);
    }
  }
}

const char* const kInputNames[] = {"x", "alpha", "delta", "theta", "gamma", "omega", "h_in"};

}  // namespace

TEST_CASE("cema: gradients of y and h_out match finite differences", "[ops][cema]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(2, 7, 3, 4, seed, true);
  check_gradients_multi(y_and_state, in.list());
}

TEST_CASE("cema: gradients of y alone, without an incoming state", "[ops][cema]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(2, 7, 3, 4, seed, false);
  check_gradients([](const std::vector<Tensor>& v) { return run(v, false).y; }, in.list());
}

TEST_CASE("cema: gradients that flow only through h_out", "[ops][cema]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(2, 7, 3, 4, seed, true);
  check_gradients([](const std::vector<Tensor>& v) { return run(v, true).h_out; }, in.list());
}

TEST_CASE("cema: gradients at edge shapes", "[ops][cema]") {
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 1, 1}, {1, 5, 2, 1}, {3, 1, 2, 3}, {1, 4, 1, 16}};
  for (const auto& s : shapes) {
    const uint64_t seed = fresh_seed();
    INFO("B L D N = " << s[0] << " " << s[1] << " " << s[2] << " " << s[3] << ", seed " << seed);
    const Inputs in = random_inputs(s[0], s[1], s[2], s[3], seed, true);
    check_gradients_multi(y_and_state, in.list());
  }
}

TEST_CASE("cema: forward values of a hand-computed case", "[ops][cema]") {
  // D = N = 1, raw alpha = delta = theta = 0: α = δ = s = 1/2, φ = 2π·s = π, so p = 1/2 and
  // q = (1 − 1/4)·e^{iπ} = −3/4. γ = 2 + 3i, omega = 0.5, h_in = 1 + i, x = (1, 2):
  //   h_0 = −0.75·(1 + i) + 0.5 = −0.25 − 0.75i        y_0 = Re(γ h_0) + 0.5 = (−0.5 + 2.25) + 0.5 = 2.25
  //   h_1 = −0.75·h_0 + 1 = 1.1875 + 0.5625i           y_1 = (2.375 − 1.6875) + 1 = 1.6875
  const Tensor zero = Tensor::zeros({1, 1, 1}, DType::f64);
  const Tensor gamma = Tensor::from_vector<double>({2, 3}, {1, 1, 2});
  const Tensor omega = Tensor::from_vector<double>({0.5}, {1, 1});
  const Tensor h_in = Tensor::from_vector<double>({1, 1}, {1, 1, 1, 2});
  const Tensor x = Tensor::from_vector<double>({1, 2}, {1, 2, 1});
  const CemaOutput out = cema(x, zero, zero, zero, gamma, omega, h_in, true);
  const std::vector<double> y = out.y.to_vector<double>(), h = out.h_out.to_vector<double>();
  CHECK(std::abs(y[0] - 2.25) < 1e-14);
  CHECK(std::abs(y[1] - 1.6875) < 1e-14);
  CHECK(std::abs(h[0] - 1.1875) < 1e-14);
  CHECK(std::abs(h[1] - 0.5625) < 1e-14);
}

TEST_CASE("cema: the recurrence equals the convolution form and the one-token step", "[ops][cema]") {
  const int64_t B = 2, L = 23, D = 3, N = 5;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(B, L, D, N, seed, true);
  const CemaOutput out = cema(in.x, in.alpha, in.delta, in.theta, in.gamma, in.omega, in.h_in, true);
  const CemaCoefficients c = cema_coefficients(in.alpha, in.delta, in.theta, in.gamma, in.omega);

  // docs/megalodon.md §2.3.3 with std::complex and powers q^j = exp(j·log q):
  //   K_j = Re Σ_n p γ q^j,  bias_t = Re Σ_n γ q^{t+1} h_in,  y_t = Σ_{j<=t} K_j x_{t-j} + bias_t + omega x_t,
  //   h_out = p Σ_j q^{L-1-j} x_j + q^L h_in.
  using Z = std::complex<double>;
  const std::vector<double> p = c.p.to_vector<double>(), log_q = c.log_q.to_vector<double>(),
                            gamma = c.gamma.to_vector<double>(), omega = c.omega.to_vector<double>(),
                            x = in.x.to_vector<double>(), h_in = in.h_in.to_vector<double>();
  auto power = [&](int64_t m, double j) { return std::exp(j * Z(log_q[2 * m], log_q[2 * m + 1])); };
  std::vector<double> y_conv(B * L * D), h_conv(B * D * N * 2);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t t = 0; t < L; ++t) {
        double value = omega[d] * x[(b * L + t) * D + d];
        for (int64_t n = 0; n < N; ++n) {
          const int64_t m = d * N + n, s = (b * D + d) * N + n;
          const Z g(gamma[2 * m], gamma[2 * m + 1]);
          for (int64_t j = 0; j <= t; ++j) value += std::real(p[m] * g * power(m, j)) * x[(b * L + t - j) * D + d];
          value += std::real(g * power(m, t + 1) * Z(h_in[2 * s], h_in[2 * s + 1]));
        }
        y_conv[(b * L + t) * D + d] = value;
      }
      for (int64_t n = 0; n < N; ++n) {
        const int64_t m = d * N + n, s = (b * D + d) * N + n;
        Z h = power(m, L) * Z(h_in[2 * s], h_in[2 * s + 1]);
        for (int64_t j = 0; j < L; ++j) h += p[m] * power(m, L - 1 - j) * x[(b * L + j) * D + d];
        h_conv[2 * s] = h.real();
        h_conv[2 * s + 1] = h.imag();
      }
    }
  }
  CHECK(max_abs_difference(out.y, Tensor::from_vector(y_conv, {B, L, D})) < 1e-12);
  CHECK(max_abs_difference(out.h_out, Tensor::from_vector(h_conv, {B, D, N, 2})) < 1e-12);

  // Token by token with cema_step from the same incoming state.
  Tensor h = Tensor::empty({B, D, N, 2}, DType::f64);
  copy_(h, in.h_in);
  for (int64_t t = 0; t < L; ++t) {
    const Tensor y_t = cema_step(contiguous(squeeze(slice(in.x.detach(), 1, t, t + 1), 1)), c, h);
    const Tensor expected = squeeze(slice(out.y.detach(), 1, t, t + 1), 1);
    INFO("t = " << t);
    CHECK(max_abs_difference(y_t, expected) < 1e-12);
  }
  CHECK(max_abs_difference(h, out.h_out) < 1e-12);
}

TEST_CASE("cema: a sequence in two pieces with carried state equals the whole", "[ops][cema]") {
  const int64_t B = 2, L = 11, D = 3, N = 4, split = 4;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(B, L, D, N, seed, true);
  const Tensor w_y = random_tensor({B, L, D}, seed + 10, DType::f64);
  const Tensor w_h = random_tensor({B, D, N, 2}, seed + 11, DType::f64);

  const std::vector<Tensor> whole_in = fresh_leaves(in.list());
  const CemaOutput whole = run(whole_in, true);
  autograd::backward({whole.y, whole.h_out}, {w_y, w_h});

  std::vector<Tensor> piece_in = fresh_leaves(in.list());
  std::vector<Tensor> first_in = piece_in, second_in = piece_in;
  first_in[0] = slice(piece_in[0], 1, 0, split);
  second_in[0] = slice(piece_in[0], 1, split, L);
  const CemaOutput first = run(first_in, true);
  second_in[6] = first.h_out;
  const CemaOutput second = run(second_in, true);
  autograd::backward({first.y, second.y, second.h_out},
                     {contiguous(slice(w_y, 1, 0, split)), contiguous(slice(w_y, 1, split, L)), w_h});

  CHECK(max_abs_difference(first.y, slice(whole.y, 1, 0, split)) < 1e-12);
  CHECK(max_abs_difference(second.y, slice(whole.y, 1, split, L)) < 1e-12);
  CHECK(max_abs_difference(second.h_out, whole.h_out) < 1e-12);
  for (size_t k = 0; k < whole_in.size(); ++k) {
    INFO("gradient of " << kInputNames[k]);
    REQUIRE(whole_in[k].grad().defined());
    REQUIRE(piece_in[k].grad().defined());
    CHECK(max_abs_difference(piece_in[k].grad(), whole_in[k].grad()) < 1e-11);
  }
}

TEST_CASE("cema: outputs and gradients are causal", "[ops][cema]") {
  const int64_t B = 2, L = 9, D = 3, N = 4, t0 = 5;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(B, L, D, N, seed, true);
  const CemaOutput base = cema(in.x, in.alpha, in.delta, in.theta, in.gamma, in.omega, in.h_in, false);
  // Change every token from t0 on: earlier outputs do not move.
  Tensor changed = Tensor::empty(in.x.shape(), DType::f64);
  copy_(changed, in.x);
  copy_(slice(changed, 1, t0, L), random_tensor({B, L - t0, D}, seed + 20, DType::f64));
  const CemaOutput other = cema(changed, in.alpha, in.delta, in.theta, in.gamma, in.omega, in.h_in, false);
  CHECK(max_abs_difference(slice(base.y, 1, 0, t0), slice(other.y, 1, 0, t0)) == 0.0);
  CHECK(max_abs_difference(slice(base.y, 1, t0, L), slice(other.y, 1, t0, L)) > 0.0);
  // The gradient of y at t0 reaches no later token.
  Tensor x = fresh_leaf(in.x);
  const CemaOutput out = cema(x, in.alpha, in.delta, in.theta, in.gamma, in.omega, in.h_in, false);
  Tensor seed_y = Tensor::zeros({B, L, D}, DType::f64);
  fill_(slice(seed_y, 1, t0, t0 + 1), 1.0);
  backward(out.y, seed_y);
  const Tensor later = slice(x.grad(), 1, t0 + 1, L);
  CHECK(max_abs_difference(later, Tensor::zeros(later.shape(), DType::f64)) == 0.0);
  const Tensor at = slice(x.grad(), 1, t0, t0 + 1);
  CHECK(max_abs_difference(at, Tensor::zeros(at.shape(), DType::f64)) > 0.0);
}

TEST_CASE("cema: f32 and bf16 activations follow the f64 computation", "[ops][cema]") {
  const int64_t B = 2, L = 13, D = 3, N = 4;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(B, L, D, N, seed, true);
  const CemaOutput ref = run(in.list(), true);
  for (DType x_dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(x_dtype));
    std::vector<Tensor> v;
    for (const Tensor& t : in.list()) v.push_back(fresh_leaf(cast(t.detach(), DType::f32)));
    v[0] = fresh_leaf(cast(in.x.detach(), x_dtype));
    const CemaOutput out = run(v, true);
    CHECK(out.y.dtype() == x_dtype);
    CHECK(out.h_out.dtype() == DType::f32);
    const double tolerance = x_dtype == DType::bf16 ? 1e-2 : 1e-5;
    const Tensor ref_y = cast(cast(ref.y.detach(), x_dtype), DType::f64);  // the f64 result rounded like y
    CHECK(relative_error(out.y, ref_y) < tolerance);
    // h_out sees x rounded to bf16, so compare with the f64 op on that x.
    std::vector<Tensor> rounded = in.list();
    rounded[0] = cast(cast(in.x.detach(), x_dtype), DType::f64);
    CHECK(relative_error(out.h_out, run(rounded, true).h_out) < 1e-5);
    autograd::backward({out.y, out.h_out}, {Tensor::ones({B, L, D}, x_dtype), Tensor::ones({B, D, N, 2})});
    CHECK(v[0].grad().dtype() == x_dtype);
    for (size_t k = 1; k < v.size(); ++k) CHECK(v[k].grad().dtype() == DType::f32);
  }
}

TEST_CASE("cema: an empty sequence passes the state through", "[ops][cema]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(2, 0, 3, 4, seed, true);
  const CemaOutput out = run(in.list(), true);
  CHECK(out.y.shape() == Shape{2, 0, 3});
  CHECK(max_abs_difference(out.h_out, in.h_in) == 0.0);
}

TEST_CASE("cema: bad inputs throw clear errors", "[ops][cema]") {
  const Inputs in = random_inputs(2, 5, 3, 4, fresh_seed(), true);
  const Tensor x = in.x.detach(), alpha = in.alpha.detach(), delta = in.delta.detach(), theta = in.theta.detach(),
               gamma = in.gamma.detach(), omega = in.omega.detach(), h_in = in.h_in.detach();
  // Shapes.
  check_error([&] { cema(x, Tensor::zeros({3, 4}, DType::f64), delta, theta, gamma, omega, h_in, true); },
              {"cema", "alpha must be [D, N, 1]", "[3, 4]"});
  check_error([&] { cema(x, alpha, Tensor::zeros({3, 5, 1}, DType::f64), theta, gamma, omega, h_in, true); },
              {"delta must be [D, N, 1] = [3, 4, 1]", "[3, 5, 1]"});
  check_error([&] { cema(x, alpha, delta, Tensor::zeros({3, 1}, DType::f64), gamma, omega, h_in, true); },
              {"theta must be [D, 1, 1] = [3, 1, 1]"});
  check_error([&] { cema(x, alpha, delta, theta, Tensor::zeros({3, 5, 2}, DType::f64), omega, h_in, true); },
              {"gamma must be [D, N, 2] = [3, 4, 2]", "N = 4", "[3, 5, 2]"});
  check_error([&] { cema(x, alpha, delta, theta, gamma, Tensor::zeros({4, 1}, DType::f64), h_in, true); },
              {"omega must be [D, 1] = [3, 1]"});
  check_error([&] { cema(Tensor::zeros({2, 5, 4}, DType::f64), alpha, delta, theta, gamma, omega, h_in, true); },
              {"x must be [B, L, D] with D = 3", "[2, 5, 4]"});
  check_error([&] { cema(Tensor::zeros({5, 3}, DType::f64), alpha, delta, theta, gamma, omega, Tensor(), true); },
              {"x must be [B, L, D]"});
  check_error([&] { cema(x, alpha, delta, theta, gamma, omega, Tensor::zeros({2, 3, 5, 2}, DType::f64), true); },
              {"h_in must be [B, D, N, 2] = [2, 3, 4, 2]", "[2, 3, 5, 2]"});
  // Dtypes.
  check_error([&] { cema(cast(x, DType::f32), alpha, delta, theta, gamma, omega, h_in, true); },
              {"f64 parameters need an f64 x"});
  const Tensor a32 = cast(alpha, DType::f32), d32 = cast(delta, DType::f32), t32 = cast(theta, DType::f32),
               g32 = cast(gamma, DType::f32), o32 = cast(omega, DType::f32);
  check_error([&] { cema(x, a32, d32, t32, g32, o32, Tensor(), true); }, {"f32 parameters need an f32 or bf16 x"});
  check_error([&] { cema(cast(x, DType::f32), a32, d32, t32, g32, o32, h_in, true); },
              {"h_in", "must have the dtype and device of the parameters"});
  check_error([&] { cema(x, alpha, cast(delta, DType::f32), theta, gamma, omega, h_in, true); },
              {"delta", "differ in dtype"});
  check_error([&] { cema(cast(x, DType::bf16), cast(alpha, DType::bf16), cast(delta, DType::bf16),
                         cast(theta, DType::bf16), cast(gamma, DType::bf16), cast(omega, DType::bf16), Tensor(), true); },
              {"parameters must be f32 or f64"});
  check_error([&] { cema(x, Tensor(), delta, theta, gamma, omega, h_in, true); }, {"alpha is an undefined tensor"});
  // The decoding step.
  const CemaCoefficients c = cema_coefficients(alpha, delta, theta, gamma, omega);
  Tensor h = Tensor::zeros({2, 3, 4, 2}, DType::f64);
  check_error([&] { cema_step(Tensor::zeros({2, 4}, DType::f64), c, h); }, {"x_t must be [B, D] with D = 3"});
  check_error([&] { cema_step(Tensor::zeros({2, 3}, DType::f64), c, Tensor::zeros({2, 3, 5, 2}, DType::f64)); },
              {"h must be [B, D, N, 2] = [2, 3, 4, 2]"});
  check_error([&] { cema_step(Tensor::zeros({2, 3}, DType::f32), c, h); }, {"f64 coefficients need an f64 x_t"});
  const Tensor strided = permute(Tensor::zeros({3, 2, 4, 2}, DType::f64), {1, 0, 2, 3});
  check_error([&] { cema_step(Tensor::zeros({2, 3}, DType::f64), c, strided); }, {"must be contiguous"});
}

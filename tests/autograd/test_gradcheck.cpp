// autograd/ gradcheck: it must fail a deliberately wrong backward and pass the right one. The ops
// here exist only in this test: a forward computed without recording, plus a hand-written backward
// registered through autograd::record, exactly as ops/ files do.
#include "autograd/gradcheck.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// y = x^3 with a backward that returns dy * factor * x^2 (factor 3 is right).
Tensor cube(const Tensor& x, double factor) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = x * x * x;
  }
  autograd::record("cube", {x}, {y}, [x = x.detach(), factor](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * (x * x) * factor};
  });
  return y;
}

// out = a * b with a backward whose gradient for b is wrong (it uses b instead of a) when `wrong_b`.
Tensor product(const Tensor& a, const Tensor& b, bool wrong_b) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = a * b;
  }
  autograd::record("product", {a, b}, {out}, [a = a.detach(), b = b.detach(), wrong_b](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0] * b, g[0] * (wrong_b ? b : a)};
  });
  return out;
}

// Two outputs (sum and difference); the second output's backward has the wrong sign when `wrong`.
std::vector<Tensor> sum_and_difference(const Tensor& a, const Tensor& b, bool wrong) {
  Tensor s, d;
  {
    NoGradGuard no_grad;
    s = a + b;
    d = a - b;
  }
  autograd::record("sum_and_difference", {a, b}, {s, d}, [wrong](const std::vector<Tensor>& g) {
    const double sign = wrong ? 1.0 : -1.0;
    return std::vector<Tensor>{g[0] + g[1], g[0] + g[1] * sign};
  });
  return {s, d};
}

}  // namespace

TEST_CASE("gradcheck passes a correct backward and catches a wrong one", "[autograd][gradcheck]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({3, 4}, seed, DType::f64, 0.5, 1.5).set_requires_grad(true);

  const auto cube_with = [](double factor) {
    return [factor](const std::vector<Tensor>& in) { return cube(in[0], factor); };
  };
  const autograd::GradcheckResult right = autograd::gradcheck(cube_with(3.0), {x});
  INFO(right.report);
  CHECK(right.ok);
  CHECK(right.checked == 12);
  CHECK(right.max_abs_error < 1e-6);
  CHECK(right.report.empty());

  const autograd::GradcheckResult wrong = autograd::gradcheck(cube_with(2.9), {x});
  CHECK_FALSE(wrong.ok);
  CHECK(wrong.max_abs_error > 1e-3);
  // The report names the input, the element and both values.
  CHECK(contains(wrong.report, "input 0 f64[3, 4] on cpu element 0: analytic "));
  CHECK(contains(wrong.report, "numeric"));
  CHECK(contains(wrong.report, "... 4 more mismatches"));  // 12 mismatches, 8 listed
  // The caller's tensor is left alone: gradcheck works on private copies.
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("gradcheck checks every input, and only inputs that require grad", "[autograd][gradcheck]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = random_tensor({5}, seed, DType::f64).set_requires_grad(true);
  const Tensor b = random_tensor({5}, seed + 1, DType::f64).set_requires_grad(true);
  const auto f = [](bool wrong) {
    return [wrong](const std::vector<Tensor>& in) { return product(in[0], in[1], wrong); };
  };
  CHECK(autograd::gradcheck(f(false), {a, b}).ok);
  const autograd::GradcheckResult wrong = autograd::gradcheck(f(true), {a, b});
  CHECK_FALSE(wrong.ok);
  CHECK(wrong.checked == 10);
  CHECK(contains(wrong.report, "input 1"));
  CHECK_FALSE(contains(wrong.report, "input 0"));  // a's gradient is right
  // With b held constant, the wrong formula for b is never consulted.
  const Tensor b_constant = random_tensor({5}, seed + 1, DType::f64);
  const autograd::GradcheckResult held = autograd::gradcheck(f(true), {a, b_constant});
  CHECK(held.ok);
  CHECK(held.checked == 5);
}

TEST_CASE("gradcheck projects every output of a multi-output op", "[autograd][gradcheck]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = random_tensor({2, 3}, seed, DType::f64).set_requires_grad(true);
  const Tensor b = random_tensor({2, 3}, seed + 1, DType::f64).set_requires_grad(true);
  CHECK(autograd::gradcheck(autograd::MultiFunction([](const std::vector<Tensor>& in) {
                              return sum_and_difference(in[0], in[1], false);
                            }),
                            {a, b})
            .ok);
  const autograd::GradcheckResult wrong = autograd::gradcheck(
      autograd::MultiFunction([](const std::vector<Tensor>& in) { return sum_and_difference(in[0], in[1], true); }),
      {a, b});
  CHECK_FALSE(wrong.ok);
  CHECK(contains(wrong.report, "input 1"));
}

TEST_CASE("gradcheck refuses what it cannot check", "[autograd][gradcheck]") {
  const auto twice = [](const std::vector<Tensor>& in) { return in[0] * 2.0; };
  const Tensor f32 = Tensor::ones({3}).set_requires_grad(true);
  CHECK(contains(error_message([&] { autograd::gradcheck(twice, {f32}); }),
                 "inputs that require grad must be f64 CPU tensors, got f32[3] on cpu"));
  const Tensor constant = Tensor::ones({3}, DType::f64);
  CHECK(contains(error_message([&] { autograd::gradcheck(twice, {constant}); }), "no output requires grad"));
}

// Elementwise ops: finite-difference gradients (f64, random inputs, broadcasting), and bad inputs.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
using Unary = Tensor (*)(const Tensor&);
struct UnaryCase {
  const char* name;
  Unary f;
  double low, high;  // input range where the op is smooth and defined
};
const UnaryCase kUnary[] = {
    {"neg", neg, -2, 2},       {"exp", exp, -2, 2},         {"log", log, 0.2, 3},        {"sqrt", sqrt, 0.2, 3},
    {"rsqrt", rsqrt, 0.2, 3},  {"tanh", tanh, -2, 2},       {"sigmoid", sigmoid, -3, 3}, {"silu", silu, -3, 3},
    {"gelu", gelu, -3, 3},     {"relu", relu, 0.05, 2},
};
}  // namespace

TEST_CASE("unary ops: gradients match finite differences", "[ops][elementwise]") {
  for (const UnaryCase& c : kUnary) {
    const uint64_t seed = fresh_seed();
    INFO(c.name << " seed " << seed);
    Tensor x = random_tensor({3, 5}, seed, DType::f64, c.low, c.high).set_requires_grad(true);
    check_gradients([&](const std::vector<Tensor>& in) { return c.f(in[0]); }, {x});
  }
}

TEST_CASE("relu: gradient on both sides of zero", "[ops][elementwise]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Values away from the kink at 0, half of them negative.
  Tensor u = random_tensor({4, 6}, seed, DType::f64, 0.1, 1.0);
  Tensor sign = Tensor::from_vector<double>({1, -1, 1, -1, -1, 1}, {6});
  Tensor x = mul(u, sign).detach().set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x});
}

TEST_CASE("binary ops: gradients with broadcasting", "[ops][elementwise]") {
  using Binary = Tensor (*)(const Tensor&, const Tensor&);
  const std::pair<const char*, Binary> ops[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}, {"pow", pow}};
  const std::pair<Shape, Shape> shapes[] = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{1}, {2, 3}}, {{}, {2, 2}}};
  for (const auto& [name, f] : ops) {
    for (const auto& [sa, sb] : shapes) {
      const uint64_t seed = fresh_seed();
      INFO(name << " " << shape_str(sa) << " x " << shape_str(sb) << " seed " << seed);
      Tensor a = random_tensor(sa, seed, DType::f64, 0.5, 2.0).set_requires_grad(true);
      Tensor b = random_tensor(sb, seed + 1, DType::f64, 0.5, 2.0).set_requires_grad(true);
      check_gradients([f = f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b});
    }
  }
}

TEST_CASE("scalar variants: gradients", "[ops][elementwise]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({2, 3}, seed, DType::f64, 0.5, 2.0).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return add(in[0], 1.5); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return mul(in[0], -0.7); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return pow(in[0], 2.5); }, {x});
}

TEST_CASE("binary ops: forward values follow broadcasting", "[ops][elementwise]") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, 20, 30}, {3});
  CHECK(add(a, b).to_vector<float>() == std::vector<float>{11, 22, 33, 14, 25, 36});
  Tensor c = Tensor::from_vector<float>({2, 3}, {2, 1});
  CHECK(mul(a, c).to_vector<float>() == std::vector<float>{2, 4, 6, 12, 15, 18});
  // A non-contiguous (transposed) input reads the right elements.
  Tensor t = transpose(a, 0, 1);  // [[1,4],[2,5],[3,6]]
  CHECK(sub(t, Tensor::scalar(1.0)).to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("elementwise ops: bad inputs throw clear errors", "[ops][elementwise]") {
  Tensor a = Tensor::zeros({2, 3});
  Tensor b = Tensor::zeros({4});
  REQUIRE_THROWS_AS(add(a, b), Error);
  try {
    add(a, b);
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("add") != std::string::npos);
    CHECK(message.find("[2, 3]") != std::string::npos);
    CHECK(message.find("[4]") != std::string::npos);
  }
  CHECK_THROWS_AS(mul(a, Tensor::zeros({2, 3}, DType::f64)), Error);  // dtype mismatch
  CHECK_THROWS_AS(exp(Tensor::zeros({2}, DType::i64)), Error);        // integer input
  CHECK_THROWS_AS(exp(Tensor()), Error);                              // undefined
}

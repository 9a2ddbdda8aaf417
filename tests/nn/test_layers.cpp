// nn/ Linear, Embedding and MLP: parameter layout and names, initialisation statistics, options, the
// forward against a host computation, and gradients reaching the parameters.
// (Uses the ops linear(), embedding() and gelu().)
#include <cmath>

#include "autograd/engine.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/statistics.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

constexpr double kSigmas = 6.0;

// Sample mean and variance of n draws against a distribution with this variance (6 standard
// errors; the variance's standard error is at most variance * sqrt(2 / n) for these shapes).
void check_moments(const std::vector<double>& v, double variance) {
  const double n = static_cast<double>(v.size());
  const Moments m = moments(v);
  CHECK(std::abs(m.mean) < kSigmas * std::sqrt(variance / n));
  CHECK(std::abs(m.variance - variance) < kSigmas * variance * std::sqrt(2.0 / n));
}

}  // namespace

TEST_CASE("Linear: parameters, names and default init", "[nn][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const Linear fc(256, 64, true, {.generator = &gen});
  CHECK(fc.weight().shape() == Shape{64, 256});
  CHECK(fc.bias().shape() == Shape{64});
  CHECK(fc.in_features() == 256);
  CHECK(fc.out_features() == 64);
  CHECK(fc.weight().dtype() == DType::f32);
  const std::vector<Parameter> parameters = fc.named_parameters();
  REQUIRE(parameters.size() == 2);
  CHECK(parameters[0].name == "weight");
  CHECK(parameters[1].name == "bias");
  CHECK(fc.bias().to_vector<double>() == std::vector<double>(64, 0.0));
  check_moments(fc.weight().to_vector<double>(), 1.0 / (3.0 * 256));  // "He": 1/sqrt(3 fan_in)

  const Linear no_bias(8, 3, false);
  CHECK_FALSE(no_bias.bias().defined());
  CHECK(no_bias.named_parameters().size() == 1);
  CHECK(contains(error_message([] { Linear(0, 3); }), "feature counts must be positive, got in 0, out 3"));
}

TEST_CASE("Linear: init options (std, dtype, generator)", "[nn][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const Linear wide(100, 200, true, {.std = 0.5, .dtype = DType::f64, .generator = &gen});
  CHECK(wide.weight().dtype() == DType::f64);
  CHECK(wide.bias().dtype() == DType::f64);
  check_moments(wide.weight().to_vector<double>(), 0.25);
  // The same generator state gives the same weights.
  Generator a(seed), b(seed);
  const Linear first(5, 7, true, {.generator = &a});
  const Linear second(5, 7, true, {.generator = &b});
  CHECK(first.weight().to_vector<float>() == second.weight().to_vector<float>());
  CHECK(a.offset == 1);  // one draw
}

TEST_CASE("Linear: forward is x W^T + b, and gradients reach W and b", "[nn][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const int64_t in = 5, out = 3;
  const Linear fc(in, out, true, {.dtype = DType::f64, .generator = &gen});
  const Tensor bias_values = random_tensor({out}, seed + 1);
  copy_(fc.bias(), bias_values);
  const Tensor x = random_tensor({2, 4, in}, seed + 2);
  const Tensor y = fc.forward(x);
  REQUIRE(y.shape() == Shape{2, 4, out});
  const std::vector<double> xs = x.to_vector<double>(), w = fc.weight().to_vector<double>(),
                            b = bias_values.to_vector<double>(), ys = y.to_vector<double>();
  for (int64_t row = 0; row < 8; ++row) {
    for (int64_t o = 0; o < out; ++o) {
      double expected = b[o];
      for (int64_t i = 0; i < in; ++i) expected += xs[row * in + i] * w[o * in + i];
      CHECK(std::abs(ys[row * out + o] - expected) < 1e-12);
    }
  }
  // d sum(y) / dW[o, i] = sum over rows of x[row, i]; d sum(y) / db[o] = number of rows.
  backward(sum(y));
  const std::vector<double> dw = fc.weight().grad().to_vector<double>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      double expected = 0;
      for (int64_t row = 0; row < 8; ++row) expected += xs[row * in + i];
      CHECK(std::abs(dw[o * in + i] - expected) < 1e-12);
    }
  }
  CHECK(fc.bias().grad().to_vector<double>() == std::vector<double>(out, 8.0));
}

TEST_CASE("Embedding: parameters, truncated init, lookup and gradient", "[nn][embedding]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const int64_t vocab = 300, dim = 64;
  const Embedding table(vocab, dim, {.generator = &gen});
  CHECK(table.weight().shape() == Shape{vocab, dim});
  CHECK(table.num_embeddings() == vocab);
  CHECK(table.dim() == dim);
  REQUIRE(table.named_parameters().size() == 1);
  CHECK(table.named_parameters()[0].name == "weight");
  // normal(0, 1/sqrt(dim)) cut at 3 std: the variance shrinks by 1 - 6 phi(3) / (2 Phi(3) - 1).
  const double std = 1.0 / std::sqrt(static_cast<double>(dim));
  const std::vector<double> w = table.weight().to_vector<double>();
  for (double v : w) REQUIRE(std::abs(v) <= 3 * std + 1e-7);
  const double phi3 = std::exp(-4.5) / std::sqrt(2 * M_PI);
  check_moments(w, std * std * (1 - 6 * phi3 / std::erf(3 / std::sqrt(2.0))));

  const Embedding small(10, 4, {.std = 1.0, .dtype = DType::f64});
  const Tensor ids = Tensor::from_vector<int64_t>({3, 0, 3, 9, 1, 3}, {2, 3});
  const Tensor y = small.forward(ids);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  const std::vector<double> table_values = small.weight().to_vector<double>(), rows = y.to_vector<double>();
  const std::vector<int64_t> id_values = ids.to_vector<int64_t>();
  for (size_t k = 0; k < id_values.size(); ++k)
    for (int64_t d = 0; d < 4; ++d) CHECK(rows[k * 4 + d] == table_values[id_values[k] * 4 + d]);
  // The gradient of sum(y) counts how often each row was looked up.
  backward(sum(y));
  const std::vector<double> dw = small.weight().grad().to_vector<double>();
  const double counts[10] = {1, 1, 0, 3, 0, 0, 0, 0, 0, 1};
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t d = 0; d < 4; ++d) CHECK(dw[r * 4 + d] == counts[r]);
  CHECK_THROWS_AS(small.forward(Tensor::from_vector<int64_t>({10}, {1})), Error);
  CHECK(contains(error_message([] { Embedding(5, 0); }), "sizes must be positive, got 5 x 0"));
}

TEST_CASE("MLP: fc1 -> gelu -> fc2, with state_dict names", "[nn][mlp]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const int64_t in = 3, hidden = 8, out = 2, rows = 5;
  const MLP mlp(in, hidden, out, {.dtype = DType::f64, .generator = &gen});
  const std::vector<Parameter> parameters = mlp.named_parameters();
  REQUIRE(parameters.size() == 4);
  CHECK(parameters[0].name == "fc1.weight");
  CHECK(parameters[1].name == "fc1.bias");
  CHECK(parameters[2].name == "fc2.weight");
  CHECK(parameters[3].name == "fc2.bias");
  CHECK(parameters[0].tensor.shape() == Shape{hidden, in});
  CHECK(parameters[2].tensor.shape() == Shape{out, hidden});
  for (size_t k : {1, 3}) copy_(parameters[k].tensor, random_tensor(parameters[k].tensor.shape(), seed + k));
  const Tensor x = random_tensor({rows, in}, seed + 7, DType::f64, -2.0, 2.0);
  const std::vector<double> y = mlp.forward(x).to_vector<double>();
  REQUIRE(y.size() == static_cast<size_t>(rows * out));
  std::vector<std::vector<double>> values;  // fc1.weight, fc1.bias, fc2.weight, fc2.bias
  for (const Parameter& p : parameters) values.push_back(p.tensor.to_vector<double>());
  const std::vector<double> &w1 = values[0], &b1 = values[1], &w2 = values[2], &b2 = values[3];
  const std::vector<double> xs = x.to_vector<double>();
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> h(hidden);
    for (int64_t j = 0; j < hidden; ++j) {
      double a = b1[j];
      for (int64_t i = 0; i < in; ++i) a += xs[r * in + i] * w1[j * in + i];
      h[j] = 0.5 * a * (1 + std::erf(a / std::sqrt(2.0)));  // exact gelu
    }
    for (int64_t o = 0; o < out; ++o) {
      double expected = b2[o];
      for (int64_t j = 0; j < hidden; ++j) expected += h[j] * w2[o * hidden + j];
      CHECK(std::abs(y[r * out + o] - expected) < 1e-12);
    }
  }
}

// nn/ gradient clipping on the CPU: the global norm against a sum written here, clipping to max_norm
// (and leaving small gradients alone), parameters without gradients, the finite check naming the first
// bad parameter, the weighted norm left as a tensor and clipping that reads it, and bad arguments.
#include <cmath>
#include <limits>

#include "nn/grad_clip.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

std::vector<Parameter> parameters_with_gradients(uint64_t seed, double scale) {
  std::vector<Parameter> out;
  const Shape shapes[] = {{3, 5}, {7}, {2, 2, 3}};
  for (size_t k = 0; k < std::size(shapes); ++k) {
    const Tensor p = random_tensor(shapes[k], seed + k, DType::f32).set_requires_grad(true);
    p.set_grad(random_tensor(shapes[k], seed + 10 + k, DType::f32, -scale, scale));
    out.push_back({"p" + std::to_string(k), p});
  }
  return out;
}

double reference_norm(const std::vector<Parameter>& parameters) {
  double sum = 0;
  for (const Parameter& p : parameters)
    if (p.tensor.grad().defined())
      for (const double v : p.tensor.grad().to_vector<double>()) sum += v * v;
  return std::sqrt(sum);
}

}  // namespace

TEST_CASE("grad_clip: the global norm sums every gradient's squares", "[nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::vector<Parameter> parameters = parameters_with_gradients(seed, 2.0);
  const GradNorm n = grad_norm(parameters);
  CHECK(n.finite());
  CHECK(std::abs(n.norm - reference_norm(parameters)) <= 1e-12 * n.norm);
  // A parameter without a gradient counts as zero.
  parameters[1].tensor.set_grad(Tensor());
  CHECK(std::abs(grad_norm(parameters).norm - reference_norm(parameters)) <= 1e-12 * n.norm);
  for (const Parameter& p : parameters) p.tensor.set_grad(Tensor());
  CHECK(grad_norm(parameters).norm == 0.0);
}

TEST_CASE("grad_clip: clip_grad_norm_ scales to max_norm and returns the norm before", "[nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<Parameter> parameters = parameters_with_gradients(seed, 3.0);
  const double before = reference_norm(parameters);
  const std::vector<double> g0 = parameters[0].tensor.grad().to_vector<double>();
  const double max_norm = before / 4;
  const double returned = clip_grad_norm_(parameters, max_norm);
  CHECK(std::abs(returned - before) <= 1e-12 * before);
  CHECK(std::abs(reference_norm(parameters) - max_norm) <= 1e-6 * max_norm);
  // Every gradient is scaled by the same factor (direction kept).
  const std::vector<double> g1 = parameters[0].tensor.grad().to_vector<double>();
  const double factor = max_norm / (before + 1e-6);
  for (size_t k = 0; k < g0.size(); ++k) CHECK(std::abs(g1[k] - g0[k] * factor) <= 1e-6 * std::abs(g0[k]));

  // Below max_norm nothing changes, bit for bit.
  const std::vector<double> kept = parameters[2].tensor.grad().to_vector<double>();
  const double small = clip_grad_norm_(parameters, 10 * max_norm);
  CHECK(std::abs(small - max_norm) <= 1e-6 * max_norm);
  CHECK(parameters[2].tensor.grad().to_vector<double>() == kept);
}

TEST_CASE("grad_clip: NaN and inf are found and named", "[nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<Parameter> parameters = parameters_with_gradients(seed, 1.0);
  check_grads_finite(parameters);
  parameters[2].tensor.grad().data<float>()[4] = std::numeric_limits<float>::infinity();
  parameters[1].tensor.grad().data<float>()[6] = std::numeric_limits<float>::quiet_NaN();
  const GradNorm n = grad_norm(parameters);
  CHECK_FALSE(n.finite());
  CHECK(n.first_nonfinite == "p1");
  CHECK_FALSE(std::isfinite(n.norm));
  CHECK(contains(error_message([&] { check_grads_finite(parameters); }), "gradient of parameter 'p1' contains NaN or inf"));
  // Clipping leaves non-finite gradients as they are and reports the non-finite norm.
  const std::vector<double> g0 = parameters[0].tensor.grad().to_vector<double>();
  CHECK_FALSE(std::isfinite(clip_grad_norm_(parameters, 1.0)));
  CHECK(parameters[0].tensor.grad().to_vector<double>() == g0);
}

TEST_CASE("grad_clip: global_norm weighs each tensor's squares; clip_to_norm_ reads the norm tensor",
          "[nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<Parameter> parameters = parameters_with_gradients(seed, 3.0);
  std::vector<Tensor> grads;
  for (const Parameter& p : parameters) grads.push_back(p.tensor.grad());
  grads.insert(grads.begin() + 1, Tensor());  // an undefined tensor counts 0
  const std::vector<double> weights = {1.0, 5.0, 0.5, 2.0};
  const GlobalNorm n = global_norm(grads, weights);
  const std::vector<double> values = n.values.to_vector<double>();
  REQUIRE(values.size() == 5);
  double total = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    double square = 0;
    if (grads[i].defined())
      for (const double v : grads[i].to_vector<double>()) square += v * v;
    CHECK(values[i] == square);  // the same f64 additions in the same order
    total += weights[i] * square;
  }
  CHECK(values[4] == std::sqrt(total));
  CHECK(n.squares().to_vector<double>() == std::vector<double>(values.begin(), values.end() - 1));
  CHECK(n.norm().item() == values[4]);

  // Clipping to a third of the norm scales every tensor by max_norm / (norm + 1e-6), as clip_grad_norm_ does.
  const std::vector<double> g0 = grads[0].to_vector<double>();
  clip_to_norm_(grads, n.norm(), values[4] / 3);
  const double factor = values[4] / 3 / (values[4] + 1e-6);
  const std::vector<double> g1 = grads[0].to_vector<double>();
  for (size_t k = 0; k < g0.size(); ++k) CHECK(g1[k] == static_cast<float>(g0[k] * static_cast<float>(factor)));
  // A non-finite norm leaves the tensors as they are.
  const Tensor nan_norm = Tensor::full({1}, std::numeric_limits<double>::quiet_NaN(), DType::f64);
  clip_to_norm_(grads, nan_norm, 1e-3);
  CHECK(grads[0].to_vector<double>() == g1);
  CHECK(first_nonfinite({1.0, std::numeric_limits<double>::infinity(), NAN}, {"a", "b", "c"}) == "b");
  CHECK(first_nonfinite({1.0, 2.0}, {"a", "b"}).empty());
}

TEST_CASE("grad_clip: bad arguments", "[nn][grad_clip]") {
  const std::vector<Parameter> parameters = parameters_with_gradients(fresh_seed(), 1.0);
  CHECK(contains(error_message([&] { clip_grad_norm_(parameters, 0.0); }), "max_norm must be > 0"));
}

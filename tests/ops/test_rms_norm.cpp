// rms_norm: finite-difference gradients with and without weight, values against the definition
// composed from elementwise ops, MEGALODON's plus-one scale, and bad inputs.
#include <cmath>
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// x / sqrt(mean(x^2) + eps) * w, built from primitive ops.
Tensor composed_rms_norm(const Tensor& x, const Tensor& w, double eps) {
  const Tensor mean_square = mul(sum(mul(x, x), {-1}, true), 1.0 / static_cast<double>(x.size(-1)));
  const Tensor y = mul(x, rsqrt(add(mean_square, eps)));
  return w.defined() ? mul(y, w) : y;
}

}  // namespace

TEST_CASE("rms_norm: gradients with and without weight", "[ops][rms_norm]") {
  const Shape shapes[] = {{3, 5}, {2, 3, 8}, {7}, {4, 1}};
  for (const Shape& shape : shapes) {
    for (bool with_weight : {true, false}) {
      const uint64_t seed = fresh_seed();
      INFO(shape_str(shape) << " weight " << with_weight << " seed " << seed);
      Tensor x = random_tensor(shape, seed, DType::f64, -2.0, 2.0).set_requires_grad(true);
      Tensor w = with_weight ? random_tensor({shape.back()}, seed + 1).set_requires_grad(true) : Tensor();
      check_gradients([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1], 1e-5); }, {x, w});
    }
  }
}

TEST_CASE("rms_norm: gradients with MEGALODON's plus-one scale on a strided input", "[ops][rms_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // w is stored as an offset from 1 (initialised near 0) and the module passes w + 1.
  Tensor x = random_tensor({5, 3, 2}, seed).set_requires_grad(true);
  Tensor w = random_tensor({5}, seed + 1, DType::f64, -0.1, 0.1).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return rms_norm(permute(in[0], {2, 1, 0}), add(in[1], 1.0), 0.2); },
                  {x, w});
}

TEST_CASE("rms_norm: values match the composed definition", "[ops][rms_norm]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Tensor x = random_tensor({3, 2, 41}, seed, dtype, -1.0, 3.0);
    const Tensor w = random_tensor({41}, seed + 1, dtype);
    const double tolerance = dtype == DType::f64 ? 1e-13 : 1e-6;
    CHECK(relative_error(rms_norm(x, w, 1e-5), composed_rms_norm(x, w, 1e-5)) <= tolerance);
    CHECK(relative_error(rms_norm(x, Tensor(), 0.5), composed_rms_norm(x, Tensor(), 0.5)) <= tolerance);
  }
  // Unlike layer_norm, the mean is not removed: a constant row keeps its sign.
  const Tensor constant = Tensor::full({1, 4}, -2.0, DType::f64);
  const std::vector<double> y = rms_norm(constant, Tensor(), 0.0).to_vector<double>();
  for (double v : y) CHECK(std::abs(v + 1.0) <= 1e-15);
}

TEST_CASE("rms_norm: bad inputs throw clear errors", "[ops][rms_norm]") {
  const Tensor x = Tensor::zeros({2, 3});
  const std::string weight = error_message([&] { rms_norm(x, Tensor::ones({4})); });
  CHECK(weight.find("rms_norm") != std::string::npos);
  CHECK(weight.find("weight") != std::string::npos);
  CHECK(weight.find("[4]") != std::string::npos);
  CHECK(error_message([&] { rms_norm(Tensor::zeros({3, 0}), Tensor()); }).find("empty") != std::string::npos);
  CHECK_THROWS_AS(rms_norm(Tensor::scalar(2.0), Tensor()), Error);
  CHECK_THROWS_AS(rms_norm(x, Tensor::ones({3}, DType::bf16)), Error);
  CHECK_THROWS_AS(rms_norm(x, Tensor(), -1e-5), Error);
  CHECK_THROWS_AS(rms_norm(Tensor(), Tensor()), Error);
}

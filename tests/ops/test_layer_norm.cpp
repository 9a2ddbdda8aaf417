// layer_norm: finite-difference gradients with every combination of weight and bias, values against
// the definition composed from elementwise ops, and bad inputs.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// (x - mean(x)) / sqrt(var(x) + eps) * w + b over the last dim, built from primitive ops: an oracle
// that shares no code with the fused op.
Tensor composed_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const double inv_n = 1.0 / static_cast<double>(x.size(-1));
  const Tensor centered = sub(x, mul(sum(x, {-1}, true), inv_n));
  Tensor y = mul(centered, rsqrt(add(mul(sum(mul(centered, centered), {-1}, true), inv_n), eps)));
  if (w.defined()) y = mul(y, w);
  if (b.defined()) y = add(y, b);
  return y;
}

}  // namespace

TEST_CASE("layer_norm: gradients with and without weight and bias", "[ops][layer_norm]") {
  const Shape shapes[] = {{3, 5}, {2, 3, 7}, {6}, {4, 1}};
  for (const Shape& shape : shapes) {
    for (bool with_weight : {true, false}) {
      for (bool with_bias : {true, false}) {
        const uint64_t seed = fresh_seed();
        INFO(shape_str(shape) << " weight " << with_weight << " bias " << with_bias << " seed " << seed);
        const int64_t n = shape.back();
        Tensor x = random_tensor(shape, seed, DType::f64, -2.0, 2.0).set_requires_grad(true);
        Tensor w = with_weight ? random_tensor({n}, seed + 1, DType::f64, 0.5, 1.5).set_requires_grad(true) : Tensor();
        Tensor b = with_bias ? random_tensor({n}, seed + 2).set_requires_grad(true) : Tensor();
        check_gradients([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); }, {x, w, b});
      }
    }
  }
}

TEST_CASE("layer_norm: gradients for a non-contiguous input and a large eps", "[ops][layer_norm]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({6, 4}, seed).set_requires_grad(true);  // normalised over its first dim
  Tensor w = random_tensor({6}, seed + 1).set_requires_grad(true);
  Tensor b = random_tensor({6}, seed + 2).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return layer_norm(transpose(in[0], 0, 1), in[1], in[2], 0.3); },
                  {x, w, b});
}

TEST_CASE("layer_norm: values match the composed definition", "[ops][layer_norm]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Tensor x = random_tensor({4, 3, 37}, seed, dtype, -3.0, 5.0);  // mean far from 0
    const Tensor w = random_tensor({37}, seed + 1, dtype), b = random_tensor({37}, seed + 2, dtype);
    const double tolerance = dtype == DType::f64 ? 1e-13 : 1e-6;
    CHECK(relative_error(layer_norm(x, w, b, 1e-5), composed_layer_norm(x, w, b, 1e-5)) <= tolerance);
    CHECK(relative_error(layer_norm(x, Tensor(), Tensor(), 0.1), composed_layer_norm(x, Tensor(), Tensor(), 0.1)) <=
          tolerance);
  }
  // bf16 storage, f32 statistics: one rounding of the result.
  const uint64_t seed = fresh_seed();
  INFO("bf16 seed " << seed);
  const Tensor x = cast(random_tensor({5, 129}, seed, DType::f32), DType::bf16);
  const Tensor reference = composed_layer_norm(cast(x, DType::f64), Tensor(), Tensor(), 1e-5);
  CHECK(relative_error(layer_norm(x, Tensor(), Tensor(), 1e-5), reference) <= 4e-3);
}

TEST_CASE("layer_norm: bad inputs throw clear errors", "[ops][layer_norm]") {
  const Tensor x = Tensor::zeros({2, 3});
  const std::string weight = error_message([&] { layer_norm(x, Tensor::ones({2}), Tensor()); });
  CHECK(weight.find("layer_norm") != std::string::npos);
  CHECK(weight.find("weight") != std::string::npos);
  CHECK(weight.find("[2, 3]") != std::string::npos);
  CHECK(error_message([&] { layer_norm(x, Tensor(), Tensor::ones({3, 1})); }).find("bias") != std::string::npos);
  CHECK(error_message([&] { layer_norm(Tensor::zeros({2, 0}), Tensor(), Tensor()); }).find("empty") !=
        std::string::npos);
  CHECK(error_message([&] { layer_norm(x, Tensor(), Tensor(), -1.0); }).find("eps") != std::string::npos);
  CHECK_THROWS_AS(layer_norm(Tensor::scalar(1.0), Tensor(), Tensor()), Error);
  CHECK_THROWS_AS(layer_norm(x, Tensor::ones({3}, DType::f64), Tensor()), Error);
  CHECK_THROWS_AS(layer_norm(Tensor::zeros({2, 3}, DType::i32), Tensor(), Tensor()), Error);
}

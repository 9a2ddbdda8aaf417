// where and masked_fill: selection with broadcasting of every operand, conditions of every dtype,
// gradients (each side gets dy where it was selected, summed over broadcast dims), bad inputs.
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
bool has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("where: selects with broadcasting of all three operands", "[ops][where]") {
  Tensor cond = Tensor::from_vector<int64_t>({1, 0}, {2, 1});
  Tensor a = Tensor::from_vector<float>({1, 2, 3}, {3});
  Tensor b = Tensor::scalar(-1.0);
  Tensor y = where(cond, a, b);
  CHECK(y.shape() == Shape{2, 3});
  CHECK(y.to_vector<float>() == std::vector<float>{1, 2, 3, -1, -1, -1});
  // The condition may broadcast beyond both values.
  CHECK(where(Tensor::from_vector<int32_t>({0, 1, 1, 0}, {2, 2}), Tensor::scalar(5.0), Tensor::scalar(6.0))
            .to_vector<float>() == std::vector<float>{6, 5, 5, 6});
  // Non-contiguous operands.
  Tensor m = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor c = Tensor::from_vector<int64_t>({1, 0, 0, 1}, {2, 2});
  CHECK(where(transpose(c, 0, 1), transpose(m, 0, 1), Tensor::zeros({2, 2})).to_vector<float>() ==
        std::vector<float>{1, 0, 0, 4});
}

TEST_CASE("where: any condition dtype, non-zero (NaN included) is true", "[ops][where]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> values = {0.0, 2.0, -0.0, nan, -3.0};
  const std::vector<float> expected = {0, 1, 0, 1, 1};
  Tensor a = Tensor::ones({5}), b = Tensor::zeros({5});
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    INFO(dtype_name(dtype));
    CHECK(where(Tensor::from_vector(values, {5}, dtype), a, b).to_vector<float>() == expected);
  }
  for (DType dtype : {DType::i32, DType::i64}) {
    INFO(dtype_name(dtype));
    CHECK(where(Tensor::from_vector<int64_t>({0, 7, 0, -1, 1}, {5}, dtype), a, b).to_vector<float>() == expected);
  }
}

TEST_CASE("where: gradients with broadcasting", "[ops][where]") {
  const std::tuple<Shape, Shape, Shape> shapes[] = {
      {{2, 3}, {2, 3}, {2, 3}}, {{2, 3, 1}, {3, 4}, {2, 1, 4}}, {{4}, {}, {3, 4}}, {{1}, {2, 2}, {2}}};
  for (const auto& [sc, sa, sb] : shapes) {
    const uint64_t seed = fresh_seed();
    INFO(shape_str(sc) << " " << shape_str(sa) << " " << shape_str(sb) << " seed " << seed);
    const Tensor cond = relu(random_tensor(sc, seed));  // f64, about half zeros (false), half positive (true)
    Tensor a = random_tensor(sa, seed + 1).set_requires_grad(true);
    Tensor b = random_tensor(sb, seed + 2).set_requires_grad(true);
    check_gradients([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); }, {a, b});
  }
  // Only one side requires grad.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor cond = random_ids({3, 4}, 2, seed);
  Tensor a = random_tensor({3, 4}, seed + 1).set_requires_grad(true);
  Tensor b = random_tensor({4}, seed + 2);
  check_gradients([&](const std::vector<Tensor>& in) { return where(cond, in[0], b); }, {a});
  check_gradients([&](const std::vector<Tensor>& in) { return where(cond, b, transpose(in[0], 0, 1)); },
                  {random_tensor({4, 3}, seed + 3).set_requires_grad(true)});
}

TEST_CASE("where: gradient values go to the selected side only", "[ops][where]") {
  Tensor cond = Tensor::from_vector<int64_t>({1, 0, 0}, {3});
  Tensor a = Tensor::zeros({2, 3}).set_requires_grad(true);
  Tensor b = Tensor::zeros({1}).set_requires_grad(true);
  backward(sum(mul(where(cond, a, b), Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}))));
  CHECK(a.grad().to_vector<float>() == std::vector<float>{1, 0, 0, 4, 0, 0});
  CHECK(b.grad().to_vector<float>() == std::vector<float>{2 + 3 + 5 + 6});
}

TEST_CASE("masked_fill: fills where the mask is non-zero, gradient elsewhere", "[ops][where]") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor mask = Tensor::from_vector<int64_t>({0, 1, 0}, {3});
  CHECK(masked_fill(x, mask, -9.5).to_vector<float>() == std::vector<float>{1, -9.5, 3, 4, -9.5, 6});
  // A mask with more dims than x broadcasts x (like torch.masked_fill).
  Tensor big = masked_fill(Tensor::from_vector<float>({1, 2}, {2}), Tensor::from_vector<int32_t>({1, 0}, {2, 1}), 0.0);
  CHECK(big.shape() == Shape{2, 2});
  CHECK(big.to_vector<float>() == std::vector<float>{0, 0, 1, 2});
  // A causal mask fill with -inf, the attention use.
  Tensor scores = Tensor::zeros({2, 2});
  Tensor upper = Tensor::from_vector<int64_t>({0, 1, 0, 0}, {2, 2});
  const std::vector<float> masked = masked_fill(scores, upper, -INFINITY).to_vector<float>();
  CHECK(masked[1] == -INFINITY);
  CHECK(masked[0] == 0.0f);

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 4}, seed).set_requires_grad(true);
  Tensor m = random_ids({4}, 2, seed + 1);
  check_gradients([&](const std::vector<Tensor>& in) { return masked_fill(in[0], m, 2.5); }, {a});
  Tensor m2 = random_ids({2, 3, 1}, 2, seed + 2, DType::i32);
  check_gradients([&](const std::vector<Tensor>& in) { return masked_fill(in[0], m2, -1.0); }, {a});
}

TEST_CASE("where and masked_fill: bad inputs throw errors that name them", "[ops][where]") {
  Tensor a = Tensor::zeros({2, 3});
  std::string m = error_message([&] { where(Tensor::ones({2, 3}), a, Tensor::zeros({4})); });
  CHECK(has(m, "where"));
  CHECK(has(m, "[4]"));
  m = error_message([&] { where(Tensor::ones({5}), a, a); });
  CHECK(has(m, "where"));
  CHECK(has(m, "[5]"));
  CHECK(has(error_message([&] { where(Tensor::ones({2, 3}), a, Tensor::zeros({2, 3}, DType::f64)); }), "dtypes"));
  CHECK(has(error_message([&] { where(Tensor(), a, a); }), "condition"));
  CHECK(has(error_message([&] { where(a, Tensor::zeros({2, 3}, DType::i64), Tensor::zeros({2, 3}, DType::i64)); }),
            "floating"));
  m = error_message([&] { masked_fill(a, Tensor::ones({4}, DType::i64), 0.0); });
  CHECK(has(m, "masked_fill"));
  CHECK(has(m, "[4]"));
  CHECK(has(error_message([&] { masked_fill(a, Tensor(), 0.0); }), "mask"));
  CHECK(has(error_message([&] { masked_fill(Tensor::zeros({2}, DType::i32), Tensor::ones({2}), 0.0); }), "floating"));
}

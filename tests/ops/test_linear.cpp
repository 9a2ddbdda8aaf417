// linear: finite-difference gradients with and without bias over several leading-dim shapes, values
// against matmul + add, one graph node, gradients only where asked, and bad inputs.
#include "autograd/engine.h"
#include "autograd/node.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("linear: gradients with and without bias", "[ops][linear]") {
  const Shape x_shapes[] = {{3, 4}, {2, 3, 4}, {4}, {1, 1, 4}};
  for (bool with_bias : {true, false}) {
    for (const Shape& xs : x_shapes) {
      const uint64_t seed = fresh_seed();
      INFO(shape_str(xs) << (with_bias ? " with" : " without") << " bias, seed " << seed);
      Tensor x = random_tensor(xs, seed).set_requires_grad(true);
      Tensor w = random_tensor({5, 4}, seed + 1).set_requires_grad(true);
      Tensor b = with_bias ? random_tensor({5}, seed + 2).set_requires_grad(true) : Tensor();
      check_gradients([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, {x, w, b});
    }
  }
}

TEST_CASE("linear: gradients for non-contiguous input and weight", "[ops][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({4, 2, 3}, seed).set_requires_grad(true);  // used as [3, 2, 4]
  Tensor w = random_tensor({4, 5}, seed + 1).set_requires_grad(true);  // used as W [5, 4]
  Tensor b = random_tensor({5}, seed + 2).set_requires_grad(true);
  check_gradients(
      [](const std::vector<Tensor>& in) { return linear(permute(in[0], {2, 1, 0}), transpose(in[1], 0, 1), in[2]); },
      {x, w, b});
}

TEST_CASE("linear: values equal x @ W^T + b, in one node", "[ops][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (DType dtype : {DType::f64, DType::f32}) {
    Tensor x = random_tensor({2, 7, 13}, seed, dtype).set_requires_grad(true);
    Tensor w = random_tensor({9, 13}, seed + 1, dtype).set_requires_grad(true);
    Tensor b = random_tensor({9}, seed + 2, dtype).set_requires_grad(true);
    const Tensor y = linear(x, w, b);
    CHECK(y.shape() == Shape{2, 7, 9});
    CHECK(y.grad_fn()->name() == "linear");
    const Tensor expected = add(matmul(x, transpose(w, 0, 1)), b);
    CHECK(relative_error(y, expected) <= (dtype == DType::f64 ? 1e-14 : 1e-6));
    CHECK(relative_error(linear(x, w), matmul(x, transpose(w, 0, 1))) <= (dtype == DType::f64 ? 1e-14 : 1e-6));
  }
}

TEST_CASE("linear: only inputs that require grad get a gradient", "[ops][linear]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({3, 4}, seed);  // data, no gradient
  Tensor w = random_tensor({2, 4}, seed + 1).set_requires_grad(true);
  Tensor b = random_tensor({2}, seed + 2);  // frozen bias
  const Tensor y = linear(x, w, b);
  backward(sum(y));
  REQUIRE(w.grad().defined());
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(b.grad().defined());
  // d sum(x W^T) / dW[o, i] = sum over rows of x[:, i].
  CHECK(relative_error(w.grad(), expand(sum(x, {0}, true), {2, 4})) <= 1e-14);
}

TEST_CASE("linear: bad inputs throw clear errors", "[ops][linear]") {
  const std::string features = error_message([] { linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 6})); });
  CHECK(features.find("linear") != std::string::npos);
  CHECK(features.find("[3, 4]") != std::string::npos);
  CHECK(features.find("[5, 6]") != std::string::npos);
  const std::string bias = error_message([] { linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 4}), Tensor::zeros({4})); });
  CHECK(bias.find("bias") != std::string::npos);
  CHECK(bias.find("[5]") != std::string::npos);
  CHECK(error_message([] { linear(Tensor::zeros({3, 4}), Tensor::zeros({4})); }).find("weight") != std::string::npos);
  CHECK_THROWS_AS(linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 4}, DType::f64)), Error);
  CHECK_THROWS_AS(linear(Tensor::zeros({3, 4}), Tensor::zeros({5, 4}), Tensor::zeros({5}, DType::f64)), Error);
  CHECK_THROWS_AS(linear(Tensor::scalar(1.0), Tensor::zeros({5, 1})), Error);
}

// concat, split and stack: values along different dims, views, gradients (split is one node with
// several outputs), and bad inputs.
#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
bool has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }

Tensor iota(const Shape& shape, double start = 0) {
  return add(cast(reshape(arange(numel(shape)), shape), DType::f32), start);
}
}  // namespace

TEST_CASE("concat: values along any dim, with empty and non-contiguous inputs", "[ops][concat]") {
  Tensor a = iota({2, 2}), b = iota({2, 3}, 10), c = iota({2, 0});
  CHECK(concat({a, b, c}, 1).to_vector<float>() == std::vector<float>{0, 1, 10, 11, 12, 2, 3, 13, 14, 15});
  CHECK(concat({a, c, b}, -1).shape() == Shape{2, 5});
  Tensor rows = concat({a, iota({1, 2}, 20)}, 0);
  CHECK(rows.shape() == Shape{3, 2});
  CHECK(rows.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 20, 21});
  // Transposed inputs: their logical elements land in place.
  CHECK(concat({transpose(a, 0, 1), transpose(iota({2, 1}, 5), 0, 1)}, 0).to_vector<float>() ==
        std::vector<float>{0, 2, 1, 3, 5, 6});
  // One input: a copy. Integer tensors concatenate too.
  Tensor single = concat({a}, 0);
  CHECK(single.storage() != a.storage());
  CHECK(single.to_vector<float>() == a.to_vector<float>());
  CHECK(concat({arange(2), arange(3)}, 0).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 0, 1, 2});
}

TEST_CASE("concat: gradients flow back to each input", "[ops][concat]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({2, 3, 2}, seed).set_requires_grad(true);
  Tensor b = random_tensor({2, 1, 2}, seed + 1).set_requires_grad(true);
  Tensor c = random_tensor({2, 4, 2}, seed + 2).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return concat({in[0], in[1], in[2]}, 1); }, {a, b, c});
  // The same input twice, and a constant (no grad) in between.
  Tensor k = random_tensor({2, 2, 2}, seed + 3);
  check_gradients([&](const std::vector<Tensor>& in) { return concat({in[0], k, transpose(in[0], 0, 2)}, 1); }, {a});
}

TEST_CASE("split: views of the input with the given sizes", "[ops][concat]") {
  Tensor x = iota({3, 5});
  std::vector<Tensor> parts = split(x, {2, 0, 3}, 1);
  REQUIRE(parts.size() == 3);
  CHECK(parts[0].shape() == Shape{3, 2});
  CHECK(parts[1].shape() == Shape{3, 0});
  CHECK(parts[2].to_vector<float>() == std::vector<float>{2, 3, 4, 7, 8, 9, 12, 13, 14});
  for (const Tensor& part : parts) CHECK(part.storage() == x.storage());
  CHECK(split(x, {1, 2}, 0)[1].to_vector<float>() == std::vector<float>{5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
  CHECK(split(transpose(x, 0, 1), {4, 1}, 0)[1].to_vector<float>() == std::vector<float>{4, 9, 14});
  // split undoes concat.
  Tensor a = iota({2, 3}), b = iota({2, 1}, 7);
  std::vector<Tensor> back = split(concat({a, b}, 1), {3, 1}, 1);
  CHECK(back[0].to_vector<float>() == a.to_vector<float>());
  CHECK(back[1].to_vector<float>() == b.to_vector<float>());
}

TEST_CASE("split: one node with several outputs in backward", "[ops][concat]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({4, 6}, seed).set_requires_grad(true);
  // Every output seeded.
  check_gradients_multi([](const std::vector<Tensor>& in) { return split(in[0], {1, 3, 2}, 1); }, {x});
  // Outputs combined again, in another order, one of them twice.
  check_gradients(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split(in[0], {3, 1}, 0);
        return concat({mul(p[1], p[1]), p[0], p[1]}, 0);
      },
      {x});
  // Only one output used: the others contribute zeros.
  Tensor y = Tensor::ones({2, 3}).set_requires_grad(true);
  std::vector<Tensor> p = split(y, {1, 2}, 1);
  backward(sum(mul(p[1], 3.0)));
  CHECK(y.grad().to_vector<float>() == std::vector<float>{0, 3, 3, 0, 3, 3});
}

TEST_CASE("stack: a new dim at any position, and gradients", "[ops][concat]") {
  Tensor a = iota({2, 2}), b = iota({2, 2}, 10);
  CHECK(stack({a, b}, 0).to_vector<float>() == std::vector<float>{0, 1, 2, 3, 10, 11, 12, 13});
  CHECK(stack({a, b}, 1).to_vector<float>() == std::vector<float>{0, 1, 10, 11, 2, 3, 12, 13});
  Tensor last = stack({a, b}, -1);
  CHECK(last.shape() == Shape{2, 2, 2});
  CHECK(last.to_vector<float>() == std::vector<float>{0, 10, 1, 11, 2, 12, 3, 13});
  CHECK(stack({Tensor::scalar(1.0), Tensor::scalar(2.0)}, 0).to_vector<float>() == std::vector<float>{1, 2});

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({3, 2}, seed).set_requires_grad(true);
  Tensor y = random_tensor({3, 2}, seed + 1).set_requires_grad(true);
  for (int64_t dim : {0, 1, 2, -1}) {
    INFO("dim " << dim);
    check_gradients([dim](const std::vector<Tensor>& in) { return stack({in[0], in[1], in[0]}, dim); }, {x, y});
    check_gradients(
        [dim](const std::vector<Tensor>& in) { return stack({transpose(in[0], 0, 1), transpose(in[1], 0, 1)}, dim); },
        {x, y});
  }
}

TEST_CASE("concat, split, stack: bad inputs throw errors that name them", "[ops][concat]") {
  Tensor a = Tensor::zeros({2, 3});
  CHECK(has(error_message([] { concat({}, 0); }), "empty list"));
  std::string m = error_message([&] { concat({a, a, Tensor::zeros({3, 3})}, 1); });
  CHECK(has(m, "concat: input 2"));
  CHECK(has(m, "[3, 3]"));
  CHECK(has(m, "[2, 3]"));
  m = error_message([&] { concat({a, Tensor::zeros({2, 3, 1})}, 0); });  // rank mismatch
  CHECK(has(m, "input 1"));
  CHECK(has(m, "[2, 3, 1]"));
  CHECK(has(error_message([&] { concat({a, Tensor::zeros({2, 3}, DType::f64)}, 0); }), "one dtype"));
  CHECK(has(error_message([&] { concat({a, Tensor()}, 0); }), "input 1"));
  CHECK(has(error_message([&] { concat({a}, 2); }), "out of range"));
  CHECK(has(error_message([&] { concat({Tensor::scalar(1.0)}, 0); }), "concat"));  // 0-dim has no dim to join

  m = error_message([&] { split(a, {1, 1}, 1); });
  CHECK(has(m, "split"));
  CHECK(has(m, "add up to 2"));
  CHECK(has(m, "size 3"));
  CHECK(has(error_message([&] { split(a, {4, -1}, 1); }), "negative size"));
  CHECK(has(error_message([&] { split(a, {2}, 2); }), "out of range"));

  CHECK(has(error_message([] { stack({}, 0); }), "empty list"));
  m = error_message([&] { stack({a, Tensor::zeros({3, 2})}, 0); });
  CHECK(has(m, "stack: input 1"));
  CHECK(has(m, "[3, 2]"));
  CHECK(has(error_message([&] { stack({a, a}, 3); }), "out of range"));
}

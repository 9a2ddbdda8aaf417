// silu_mul on the CPU: finite-difference gradients (f64, random inputs, contiguous and strided), equality with
// silu(a) * b composed from the existing ops (f64 and f32; bf16 rounded once), and bad inputs.
#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
// {y, da, db} of y = silu_mul(a, b), or of the unfused composition silu(a) * b it replaces, for the seed dy.
std::vector<Tensor> fused(const Tensor& a, const Tensor& b, const Tensor& dy) {
  return value_and_grads([](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); }, {a, b}, dy);
}
std::vector<Tensor> unfused(const Tensor& a, const Tensor& b, const Tensor& dy) {
  return value_and_grads([](const std::vector<Tensor>& in) { return mul(silu(in[0]), in[1]); }, {a, b}, dy);
}
}  // namespace

TEST_CASE("silu_mul: gradients match finite differences", "[ops][silu_mul]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // a across silu's bend (its derivative changes sign near -1.28), b of both signs.
  const Tensor a = random_tensor({3, 5}, seed, DType::f64, -4.0, 4.0).set_requires_grad(true);
  const Tensor b = random_tensor({3, 5}, seed + 1, DType::f64, -2.0, 2.0).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); }, {a, b});
}

TEST_CASE("silu_mul: gradients through strided inputs and a strided incoming gradient", "[ops][silu_mul]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = random_tensor({4, 3, 2}, seed, DType::f64, -4.0, 4.0).set_requires_grad(true);
  const Tensor b = random_tensor({2, 4, 3}, seed + 1, DType::f64, -2.0, 2.0).set_requires_grad(true);
  // Both read through permutations ([3, 4, 2] each); the output transposed, so its gradient arrives strided.
  check_gradients(
      [](const std::vector<Tensor>& in) {
        return transpose(silu_mul(transpose(in[0], 0, 1), permute(in[1], {2, 1, 0})), 1, 2);
      },
      {a, b});
}

TEST_CASE("silu_mul: equals silu(a) * b in f64 and f32, forward and backward", "[ops][silu_mul]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    // 7 x 13 with a read transposed: a strided operand, and a size that is not a multiple of 8.
    const Tensor a = transpose(random_tensor({13, 7}, seed, dtype, -6.0, 6.0), 0, 1);
    const Tensor b = random_tensor({7, 13}, seed + 1, dtype, -2.0, 2.0);
    const Tensor dy = random_tensor({7, 13}, seed + 2, dtype);
    const std::vector<Tensor> one = fused(a, b, dy), two = unfused(a, b, dy);
    // The forward takes the composition's operations in its order: the same bits.
    CHECK(same_bits(one[0], two[0]));
    // The gradients too, but for the compiler's freedom to contract a * (1 - s) + 1 into a fused multiply-add.
    const double tolerance = dtype == DType::f64 ? 1e-14 : 1e-6;
    CHECK(relative_error(one[1], two[1]) <= tolerance);
    CHECK(relative_error(one[2], two[2]) <= tolerance);
    // db = dy * silu(a) has no sum to contract: exact.
    CHECK(same_bits(one[2], two[2]));
  }
}

TEST_CASE("silu_mul: bf16 is the f32 result rounded once", "[ops][silu_mul]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = random_tensor({5, 11}, seed, DType::bf16, -6.0, 6.0);
  const Tensor b = random_tensor({5, 11}, seed + 1, DType::bf16, -2.0, 2.0);
  const Tensor dy = random_tensor({5, 11}, seed + 2, DType::bf16);
  const std::vector<Tensor> low = fused(a, b, dy);
  const std::vector<Tensor> high = fused(cast(a, DType::f32), cast(b, DType::f32), cast(dy, DType::f32));
  for (size_t k = 0; k < low.size(); ++k) {
    INFO("output " << k);
    CHECK(low[k].dtype() == DType::bf16);
    CHECK(same_bits(low[k], cast(high[k], DType::bf16)));
  }
}

TEST_CASE("silu_mul: an empty tensor", "[ops][silu_mul]") {
  const Tensor a = Tensor::zeros({0, 3}).set_requires_grad(true);
  const Tensor y = silu_mul(a, Tensor::zeros({0, 3}));
  CHECK(y.shape() == Shape{0, 3});
  backward(sum(y));
  CHECK(a.grad().shape() == Shape{0, 3});
}

TEST_CASE("silu_mul: bad inputs throw clear errors", "[ops][silu_mul]") {
  const Tensor a = Tensor::zeros({2, 3});
  std::string message = error_message([&] { silu_mul(a, Tensor::zeros({3, 2})); });
  CHECK(contains(message, "silu_mul"));
  CHECK(contains(message, "[2, 3]"));
  CHECK(contains(message, "[3, 2]"));
  // No broadcasting, even where mul would broadcast.
  message = error_message([&] { silu_mul(a, Tensor::zeros({3})); });
  CHECK(contains(message, "[2, 3]"));
  CHECK(contains(message, "[3]"));
  message = error_message([&] { silu_mul(a, Tensor::zeros({2, 3}, DType::f64)); });
  CHECK(contains(message, "silu_mul"));
  CHECK(contains(message, "dtypes"));
  message = error_message([&] { silu_mul(Tensor::zeros({2, 3}, DType::i64), Tensor::zeros({2, 3}, DType::i64)); });
  CHECK(contains(message, "floating"));
  message = error_message([&] { silu_mul(a, Tensor()); });
  CHECK(contains(message, "undefined"));
  // Inputs on two devices: tests/ops/test_silu_mul_cuda.cpp (it needs a GPU).
}

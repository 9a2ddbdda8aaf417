// silu's one-pass backward (BinaryOp::silu_backward) on the CPU: finite-difference gradients (f64, across the bend,
// strided input and incoming gradient), equality with the composed formula it replaces and with silu_mul's da at
// b = 1, bf16 rounded once, and a seed of the wrong dtype. The table of unary ops in test_elementwise.cpp checks
// silu's gradient too.
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
// {y, dx} of y = silu(x) for the seed dy (x and dy in any layouts).
std::vector<Tensor> silu_and_grad(const Tensor& x, const Tensor& dy) {
  return value_and_grads([](const std::vector<Tensor>& in) { return silu(in[0]); }, {x}, dy);
}

// dx = dy·s·(1 + x·(1 − s)), s = sigmoid(x), as ops/silu.cpp composed it before the one-pass backward: 7 passes,
// each rounded to the dtype.
Tensor composed_backward(const Tensor& dy, const Tensor& x) {
  NoGradGuard no_grad;
  const Tensor s = sigmoid(x);
  return mul(dy, mul(s, add(mul(x, add(neg(s), 1.0)), 1.0)));
}

// Whether the compiler may have contracted x·(1 − s) + 1 into a fused multiply-add (GCC and Clang do, by default,
// where the target has the instruction): only then may the one pass and the composition differ in f32 and f64.
#if defined(__FMA__) || defined(__aarch64__) || defined(__powerpc64__) || defined(__s390x__)
constexpr bool kMayContract = true;
#else
constexpr bool kMayContract = false;
#endif
}  // namespace

TEST_CASE("silu: gradients match finite differences across the bend, strided", "[ops][silu]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // x across silu's bend (its derivative changes sign near -1.28) and into both tails.
  const Tensor a = random_tensor({3, 5}, seed, DType::f64, -6.0, 6.0).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return silu(in[0]); }, {a});
  // Read through a permutation ([3, 4, 2]), the output transposed so that its gradient arrives strided.
  const Tensor b = random_tensor({4, 3, 2}, seed + 1, DType::f64, -6.0, 6.0).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return transpose(silu(transpose(in[0], 0, 1)), 1, 2); }, {b});
}

TEST_CASE("silu: the one-pass backward equals the composed formula in f64 and f32", "[ops][silu]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed << (kMayContract ? " (FMA target)" : ""));
    // 7 x 13 (not a multiple of 8), x read transposed and dy strided.
    const Tensor x = transpose(random_tensor({13, 7}, seed, dtype, -8.0, 8.0), 0, 1);
    const Tensor dy = slice(random_tensor({7, 26}, seed + 1, dtype), 1, 0, 13);
    const Tensor one = silu_and_grad(x, dy)[1], two = composed_backward(dy, x);
    // The same operations in the same order, each rounded to the dtype: the same bits, unless a multiply-add
    // was contracted (then ~1 ulp of the sum x·(1 − s) + 1).
    if (!kMayContract) CHECK(same_bits(one, two));
    CHECK(relative_error(one, two) <= (dtype == DType::f64 ? 1e-14 : 1e-6));
  }
}

TEST_CASE("silu: the backward is silu_mul's da at b = 1, bit for bit", "[ops][silu]") {
  for (DType dtype : {DType::f64, DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Tensor x = random_tensor({5, 19}, seed, dtype, -8.0, 8.0);
    const Tensor dy = random_tensor({5, 19}, seed + 1, dtype);
    const std::vector<Tensor> fused = value_and_grads(
        [](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); }, {x, Tensor::ones({5, 19}, dtype)}, dy);
    // One silu_derivative, and dy·1 is exact.
    CHECK(same_bits(silu_and_grad(x, dy)[1], fused[1]));
  }
}

TEST_CASE("silu: the bf16 backward is the f32 result rounded once", "[ops][silu]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({5, 11}, seed, DType::bf16, -8.0, 8.0);
  const Tensor dy = random_tensor({5, 11}, seed + 1, DType::bf16);
  const Tensor low = silu_and_grad(x, dy)[1];
  CHECK(low.dtype() == DType::bf16);
  CHECK(same_bits(low, cast(silu_and_grad(cast(x, DType::f32), cast(dy, DType::f32))[1], DType::bf16)));
}

TEST_CASE("silu: an empty tensor, and a seed of another dtype", "[ops][silu]") {
  const Tensor e = Tensor::zeros({0, 3}).set_requires_grad(true);
  backward(sum(silu(e)));
  CHECK(e.grad().shape() == Shape{0, 3});
  // backward() does not cast a seed to its root's dtype: the one pass refuses it, naming itself.
  const Tensor x = Tensor::zeros({2, 3}).set_requires_grad(true);
  const std::string message = error_message([&] { backward(silu(x), Tensor::zeros({2, 3}, DType::f64)); });
  CHECK(contains(message, "silu backward"));
  CHECK(contains(message, "dtypes"));
}

// cross_entropy: values against a host oracle, finite-difference gradients (i32 and i64 targets,
// ignored rows), the all-ignored convention, stability, bad target ids, shape and type errors.
#include <cmath>
#include <functional>
#include <string>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// The oracle, on the host in f64: mean over counted rows of log sum_c exp(x[r, c]) - x[r, t_r].
double naive_cross_entropy(const Tensor& logits, const std::vector<int64_t>& targets, int64_t ignore_index) {
  const int64_t classes = logits.size(1);
  const std::vector<double> x = logits.to_vector<double>();
  double total = 0.0;
  int64_t counted = 0;
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] == ignore_index) continue;
    double sum_exp = 0.0;
    for (int64_t c = 0; c < classes; ++c) sum_exp += std::exp(x[r * classes + c]);
    total += std::log(sum_exp) - x[r * classes + targets[r]];
    ++counted;
  }
  return total / static_cast<double>(counted);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("cross_entropy: value matches the oracle, with and without ignored rows", "[ops][cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor logits = random_tensor({6, 5}, seed, DType::f64, -3, 3);
  const std::vector<int64_t> targets = {0, 4, 2, -100, 1, -100};
  for (DType target_dtype : {DType::i64, DType::i32}) {
    INFO(dtype_name(target_dtype));
    const Tensor t = Tensor::from_vector(targets, {6}, target_dtype);
    const Tensor loss = cross_entropy(logits, t);
    CHECK(loss.dim() == 0);
    CHECK(loss.dtype() == DType::f64);
    CHECK(std::abs(loss.item() - naive_cross_entropy(logits, targets, -100)) < 1e-12);
    // An ignore_index that is also a valid class: the rows with target 2 drop out.
    const std::vector<int64_t> classes = {0, 4, 2, 3, 1, 2};
    const Tensor t2 = Tensor::from_vector(classes, {6}, target_dtype);
    CHECK(std::abs(cross_entropy(logits, t2, 2).item() - naive_cross_entropy(logits, classes, 2)) < 1e-12);
    CHECK(std::abs(cross_entropy(logits, t2).item() - naive_cross_entropy(logits, classes, -100)) < 1e-12);
  }
}

TEST_CASE("cross_entropy: gradients match finite differences", "[ops][cross_entropy]") {
  for (DType target_dtype : {DType::i64, DType::i32}) {
    for (int64_t ignore_index : {int64_t(-100), int64_t(3)}) {
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(target_dtype) << " ignore_index " << ignore_index << " seed " << seed);
      Tensor logits = random_tensor({5, 4}, seed, DType::f64, -2, 2).set_requires_grad(true);
      // Rows 1 and 3 carry ignore_index; the others a class other than ignore_index.
      std::vector<int64_t> ids = random_ids({5}, ignore_index == 3 ? 3 : 4, seed + 1).to_vector<int64_t>();
      ids[1] = ids[3] = ignore_index;
      const Tensor targets = Tensor::from_vector(ids, {5}, target_dtype);
      check_gradients([&](const std::vector<Tensor>& in) { return cross_entropy(in[0], targets, ignore_index); },
                      {logits});
    }
  }
}

TEST_CASE("cross_entropy: the gradient is (softmax - onehot) / n, zero on ignored rows", "[ops][cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor logits = random_tensor({3, 4}, seed, DType::f64, -2, 2).set_requires_grad(true);
  const Tensor targets = Tensor::from_vector<int64_t>({2, -100, 0}, {3});
  backward(cross_entropy(logits, targets), Tensor::scalar(3.0, DType::f64));
  const std::vector<double> g = logits.grad().to_vector<double>();
  const std::vector<double> p = softmax(logits.detach(), 1).to_vector<double>();
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(std::abs(g[c] - 3.0 * (p[c] - (c == 2)) / 2) < 1e-12);
    CHECK(g[4 + c] == 0.0);
    CHECK(std::abs(g[8 + c] - 3.0 * (p[8 + c] - (c == 0)) / 2) < 1e-12);
  }
}

TEST_CASE("cross_entropy: all rows ignored gives 0 and a zero gradient, not NaN", "[ops][cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (DType dtype : {DType::f64, DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    Tensor logits = random_tensor({3, 4}, seed, dtype).set_requires_grad(true);
    const Tensor loss = cross_entropy(logits, Tensor::from_vector<int64_t>({-1, -1, -1}, {3}), -1);
    CHECK(loss.item() == 0.0);
    backward(loss);
    CHECK(logits.grad().to_vector<double>() == std::vector<double>(12, 0.0));
  }
  // No rows at all: the same convention.
  Tensor empty = Tensor::zeros({0, 4}, DType::f64).set_requires_grad(true);
  const Tensor loss = cross_entropy(empty, Tensor::zeros({0}, DType::i64));
  CHECK(loss.item() == 0.0);
  backward(loss);
  CHECK(empty.grad().shape() == Shape{0, 4});
}

TEST_CASE("cross_entropy: f32 and bf16 logits give an f32 loss; large logits stay finite", "[ops][cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor logits = random_tensor({4, 9}, seed, DType::f64, -3, 3);
  const Tensor targets = random_ids({4}, 9, seed + 1);
  const std::vector<int64_t> ids = targets.to_vector<int64_t>();
  for (DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    const Tensor rounded = cast(logits, dtype);
    const Tensor loss = cross_entropy(rounded, targets);
    CHECK(loss.dtype() == DType::f32);
    CHECK(loss.dim() == 0);
    const double want = naive_cross_entropy(rounded, ids, -100);
    CHECK(std::abs(loss.item() - want) <= 1e-6 * std::abs(want));
  }
  // Logits of 1e4 would overflow exp(); the loss only depends on their differences.
  const Tensor shifted = add(logits, 1e4);
  CHECK(std::abs(cross_entropy(shifted, targets).item() - naive_cross_entropy(logits, ids, -100)) < 1e-9);
  CHECK(std::isfinite(cross_entropy(cast(shifted, DType::f32), targets).item()));
}

TEST_CASE("cross_entropy: target ids outside [0, C) throw, naming the id and the row", "[ops][cross_entropy]") {
  const Tensor logits = Tensor::zeros({4, 5});
  for (DType target_dtype : {DType::i64, DType::i32}) {
    INFO(dtype_name(target_dtype));
    const Tensor too_big = Tensor::from_vector<int64_t>({0, 1, 7, 2}, {4}, target_dtype);
    REQUIRE_THROWS_AS(cross_entropy(logits, too_big), Error);
    std::string message = message_of([&] { cross_entropy(logits, too_big); });
    CHECK(message.find("cross_entropy") != std::string::npos);
    CHECK(message.find("target id 7") != std::string::npos);
    CHECK(message.find("row 2") != std::string::npos);
    CHECK(message.find("[0, 5)") != std::string::npos);

    const Tensor negative = Tensor::from_vector<int64_t>({0, -1, 1, 2}, {4}, target_dtype);
    message = message_of([&] { cross_entropy(logits, negative); });
    CHECK(message.find("target id -1") != std::string::npos);
    CHECK(message.find("row 1") != std::string::npos);
    // With ignore_index -1 the same targets are fine: zero logits give log(5) per row.
    CHECK(std::abs(cross_entropy(logits, negative, -1).item() - std::log(5.0)) < 1e-6);
    // C itself is out of range.
    CHECK_THROWS_AS(cross_entropy(logits, Tensor::from_vector<int64_t>({5, 0, 0, 0}, {4}, target_dtype)), Error);
  }
}

TEST_CASE("cross_entropy: shape, dtype and device errors", "[ops][cross_entropy]") {
  const Tensor logits = Tensor::zeros({4, 5});
  const Tensor targets = Tensor::zeros({4}, DType::i64);
  std::string message = message_of([&] { cross_entropy(Tensor::zeros({20}), targets); });
  CHECK(message.find("[N, C]") != std::string::npos);
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({2, 2, 5}), targets), Error);
  message = message_of([&] { cross_entropy(logits, Tensor::zeros({3}, DType::i64)); });
  CHECK(message.find("i64[3]") != std::string::npos);
  CHECK(message.find("f32[4, 5]") != std::string::npos);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor::zeros({4, 1}, DType::i64)), Error);
  message = message_of([&] { cross_entropy(logits, Tensor::zeros({4})); });
  CHECK(message.find("i32 or i64") != std::string::npos);
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({4, 5}, DType::i64), targets), Error);
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({4, 0}), targets), Error);
  CHECK_THROWS_AS(cross_entropy(Tensor(), targets), Error);
  CHECK_THROWS_AS(cross_entropy(logits, Tensor()), Error);
}

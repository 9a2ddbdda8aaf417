// linear_cross_entropy on the CPU: finite-difference gradients of x, weight and bias (f64, several chunks,
// ignored rows), equality with cross_entropy(linear(...)) in f32 forward and backward for row counts that are
// not multiples of the chunk, chunk size not changing the result, the incoming gradient's scale, only the
// inputs that require grad getting one, all rows ignored, bad target ids, shape and type errors.
#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// n random targets in [0, vocab), with ignore_index at the given rows.
Tensor targets_with_ignored(int64_t n, int64_t vocab, uint64_t seed, const std::vector<int64_t>& ignored,
                            int64_t ignore_index = -100, DType dtype = DType::i64) {
  std::vector<int64_t> ids = random_ids({n}, vocab, seed).to_vector<int64_t>();
  for (int64_t r : ignored) ids[r] = ignore_index;
  return Tensor::from_vector(ids, {n}, dtype);
}

struct Result {
  double loss = 0;
  Tensor dx, dw, db;
};

// Forward and backward (seed gradient `dloss`) of the fused op or the unfused pair, on fresh leaves holding
// the values of x, w, b.
Result run(bool fused, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& targets, int64_t chunk_rows,
           double dloss = 1.0) {
  Tensor xl = x.detach().set_requires_grad(true), wl = w.detach().set_requires_grad(true);
  Tensor bl = b.defined() ? b.detach().set_requires_grad(true) : Tensor();
  const Tensor loss = fused ? linear_cross_entropy(xl, wl, bl, targets, -100, chunk_rows)
                            : cross_entropy(cast(linear(xl, wl, bl), DType::f32), targets);
  backward(loss, Tensor::scalar(dloss, loss.dtype()));
  return {loss.item(), xl.grad(), wl.grad(), bl.defined() ? bl.grad() : Tensor()};
}

}  // namespace

TEST_CASE("linear_cross_entropy: gradients of x, weight and bias match finite differences",
          "[ops][linear_cross_entropy]") {
  for (bool with_bias : {true, false}) {
    for (int64_t ignore_index : {int64_t(-100), int64_t(2)}) {
      for (int64_t chunk_rows : {int64_t(3), int64_t(0)}) {  // chunks of 3, 3, 1 rows; one chunk
        const uint64_t seed = fresh_seed();
        INFO((with_bias ? "bias" : "no bias") << ", ignore_index " << ignore_index << ", chunk_rows " << chunk_rows
                                              << ", seed " << seed);
        const Tensor x = random_tensor({7, 5}, seed).set_requires_grad(true);
        const Tensor w = random_tensor({6, 5}, seed + 1, DType::f64, -2, 2).set_requires_grad(true);
        const Tensor b = with_bias ? random_tensor({6}, seed + 2).set_requires_grad(true) : Tensor();
        // Rows 1 and 4 ignored; with ignore_index 2, a class, the other rows' targets are 0 or 1.
        const Tensor targets = targets_with_ignored(7, ignore_index == 2 ? 2 : 6, seed + 3, {1, 4}, ignore_index);
        check_gradients(
            [&](const std::vector<Tensor>& in) {
              return linear_cross_entropy(in[0], in[1], in[2], targets, ignore_index, chunk_rows);
            },
            {x, w, b});
      }
    }
  }
}

TEST_CASE("linear_cross_entropy: equals cross_entropy of linear in f32, forward and backward",
          "[ops][linear_cross_entropy]") {
  // Both run the same GEMMs over other row blocks and the same f64 cross-entropy passes on f32 logits: they
  // differ by the GEMMs' summation order, ~1e-7 relative, checked at 1e-5.
  for (bool with_bias : {true, false}) {
    for (int64_t chunk_rows : {int64_t(1), int64_t(8), int64_t(0)}) {  // 37 rows: 37 chunks, 4 x 8 + 5, one
      for (DType target_dtype : {DType::i64, DType::i32}) {
        const uint64_t seed = fresh_seed();
        INFO((with_bias ? "bias" : "no bias") << ", chunk_rows " << chunk_rows << ", " << dtype_name(target_dtype)
                                              << ", seed " << seed);
        const Tensor x = random_tensor({37, 16}, seed, DType::f32, -2, 2);
        const Tensor w = random_tensor({50, 16}, seed + 1, DType::f32);
        const Tensor b = with_bias ? random_tensor({50}, seed + 2, DType::f32) : Tensor();
        const Tensor targets = targets_with_ignored(37, 50, seed + 3, {0, 9, 36}, -100, target_dtype);
        const Result fused = run(true, x, w, b, targets, chunk_rows, 0.7);
        const Result plain = run(false, x, w, b, targets, 0, 0.7);
        CHECK(std::abs(fused.loss - plain.loss) <= 1e-5 * std::abs(plain.loss));
        CHECK(relative_error(fused.dx, plain.dx) <= 1e-5);
        CHECK(relative_error(fused.dw, plain.dw) <= 1e-5);
        if (with_bias) CHECK(relative_error(fused.db, plain.db) <= 1e-5);
        CHECK(fused.dx.dtype() == DType::f32);
        CHECK(fused.dw.dtype() == DType::f32);
      }
    }
  }
}

TEST_CASE("linear_cross_entropy: the chunk size does not change the result (f64)", "[ops][linear_cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({11, 4}, seed), w = random_tensor({9, 4}, seed + 1), b = random_tensor({9}, seed + 2);
  const Tensor targets = targets_with_ignored(11, 9, seed + 3, {5});
  const Result whole = run(true, x, w, b, targets, 0);
  for (int64_t chunk_rows : {1, 2, 4, 10, 11, 100}) {
    INFO("chunk_rows " << chunk_rows);
    const Result chunked = run(true, x, w, b, targets, chunk_rows);
    CHECK(std::abs(chunked.loss - whole.loss) <= 1e-14 * std::abs(whole.loss));
    CHECK(relative_error(chunked.dx, whole.dx) <= 1e-14);
    CHECK(relative_error(chunked.dw, whole.dw) <= 1e-14);
    CHECK(relative_error(chunked.db, whole.db) <= 1e-14);
  }
}

TEST_CASE("linear_cross_entropy: the gradients scale with the incoming gradient", "[ops][linear_cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({6, 3}, seed), w = random_tensor({4, 3}, seed + 1), b = random_tensor({4}, seed + 2);
  const Tensor targets = targets_with_ignored(6, 4, seed + 3, {2});
  const Result one = run(true, x, w, b, targets, 4, 1.0), three = run(true, x, w, b, targets, 4, -3.0);
  CHECK(relative_error(three.dx, mul(one.dx, -3.0)) <= 1e-15);
  CHECK(relative_error(three.dw, mul(one.dw, -3.0)) <= 1e-15);
  CHECK(relative_error(three.db, mul(one.db, -3.0)) <= 1e-15);
}

TEST_CASE("linear_cross_entropy: only the inputs that require grad get one; none under NoGradGuard",
          "[ops][linear_cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({5, 3}, seed), w = random_tensor({4, 3}, seed + 1), b = random_tensor({4}, seed + 2);
  const Tensor targets = targets_with_ignored(5, 4, seed + 3, {});
  const Result all = run(true, x, w, b, targets, 2);
  for (int which = 0; which < 3; ++which) {
    INFO("input " << which);
    std::vector<Tensor> in = {x.detach(), w.detach(), b.detach()};
    in[which].set_requires_grad(true);
    backward(linear_cross_entropy(in[0], in[1], in[2], targets, -100, 2));
    for (int other = 0; other < 3; ++other) CHECK(in[other].grad().defined() == (other == which));
    const Tensor want = which == 0 ? all.dx : which == 1 ? all.dw : all.db;
    CHECK(relative_error(in[which].grad(), want) <= 1e-15);
  }
  NoGradGuard no_grad;
  Tensor xl = x.detach().set_requires_grad(true);
  const Tensor loss = linear_cross_entropy(xl, w, b, targets);
  CHECK_FALSE(loss.requires_grad());
  CHECK(std::abs(loss.item() - all.loss) <= 1e-15 * std::abs(all.loss));
}

TEST_CASE("linear_cross_entropy: the scratch is one chunk of logits; no gradient buffers under NoGradGuard",
          "[ops][linear_cross_entropy]") {
  // 512 rows of 40 classes in chunks of 16 (f32: the gradient of a chunk is written over its logits). The
  // whole logits would be 80 KiB; a chunk's are 2.5 KiB, the checked targets and the rows' losses 6 KiB.
  // With gradients the node keeps dx (128 KiB) and dW (10 KiB) from the forward to the backward.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t rows = 512, features = 64, vocab = 40, chunk = 16;
  const Tensor x = random_tensor({rows, features}, seed, DType::f32).set_requires_grad(true);
  const Tensor w = random_tensor({vocab, features}, seed + 1, DType::f32).set_requires_grad(true);
  const Tensor targets = targets_with_ignored(rows, vocab, seed + 2, {7});
  const int64_t scratch = chunk * vocab * 4 + rows * (8 + 4), gradients = (rows + vocab) * features * 4,
                small = 4096;  // the chunk's lse, the loss and its sum, the dloss of 1
  const Device cpu = Device::cpu();
  auto extra_peak = [&](bool grad) {
    GradModeGuard mode(grad);
    const int64_t before = memory_stats(cpu).current_bytes;
    reset_peak_memory(cpu);
    const Tensor loss = linear_cross_entropy(x, w, Tensor(), targets, -100, chunk);
    CHECK(loss.requires_grad() == grad);
    if (grad) CHECK(memory_stats(cpu).current_bytes - before >= gradients);  // kept for the backward
    return memory_stats(cpu).peak_bytes - before;
  };
  CHECK(extra_peak(false) <= scratch + small);
  CHECK(extra_peak(true) <= scratch + gradients + small);
}

TEST_CASE("linear_cross_entropy: f32 loss and bf16 gradients for bf16 inputs", "[ops][linear_cross_entropy]") {
  // bf16 x and W: the logits are their products in f32 (unrounded), so the loss is f32's up to the GEMM's
  // summation order; the gradients are rounded to bf16 once, at the end, but dz is bf16 (2^-9) before the
  // GEMMs: within 1e-2 of the f64 gradients of the same rounded inputs.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = cast(random_tensor({21, 8}, seed), DType::bf16), w = cast(random_tensor({30, 8}, seed + 1), DType::bf16);
  const Tensor targets = targets_with_ignored(21, 30, seed + 2, {3});
  const Result got = run(true, x, w, Tensor(), targets, 4);
  const Result want = run(true, cast(x, DType::f64), cast(w, DType::f64), Tensor(), targets, 0);
  CHECK(std::abs(got.loss - want.loss) <= 1e-6 * std::abs(want.loss));
  CHECK(got.dx.dtype() == DType::bf16);
  CHECK(got.dw.dtype() == DType::bf16);
  CHECK(relative_error(got.dx, want.dx) <= 1e-2);
  CHECK(relative_error(got.dw, want.dw) <= 1e-2);
}

TEST_CASE("linear_cross_entropy: all rows ignored gives 0 and zero gradients, not NaN", "[ops][linear_cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (DType dtype : {DType::f64, DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    const Tensor x = random_tensor({3, 4}, seed, dtype), w = random_tensor({5, 4}, seed + 1, dtype);
    const Tensor b = random_tensor({5}, seed + 2, dtype);
    const Result r = run(true, x, w, b, Tensor::from_vector<int64_t>({-100, -100, -100}, {3}), 2);
    CHECK(r.loss == 0.0);
    CHECK(r.dx.to_vector<double>() == std::vector<double>(12, 0.0));
    CHECK(r.dw.to_vector<double>() == std::vector<double>(20, 0.0));
    CHECK(r.db.to_vector<double>() == std::vector<double>(5, 0.0));
  }
  // No rows at all: the same convention.
  const Result empty = run(true, Tensor::zeros({0, 4}, DType::f64), random_tensor({5, 4}, seed), Tensor(),
                           Tensor::zeros({0}, DType::i64), 0);
  CHECK(empty.loss == 0.0);
  CHECK(empty.dx.shape() == Shape{0, 4});
  CHECK(empty.dw.to_vector<double>() == std::vector<double>(20, 0.0));
}

TEST_CASE("linear_cross_entropy: target ids outside [0, V) throw, naming the id and the row",
          "[ops][linear_cross_entropy]") {
  const Tensor x = Tensor::zeros({4, 3}), w = Tensor::zeros({5, 3});
  for (DType target_dtype : {DType::i64, DType::i32}) {
    INFO(dtype_name(target_dtype));
    const Tensor too_big = Tensor::from_vector<int64_t>({0, 1, 7, 2}, {4}, target_dtype);
    std::string message = error_message([&] { linear_cross_entropy(x, w, Tensor(), too_big); });
    CHECK(contains(message, "linear_cross_entropy"));
    CHECK(contains(message, "target id 7"));
    CHECK(contains(message, "row 2"));
    CHECK(contains(message, "[0, 5)"));
    const Tensor negative = Tensor::from_vector<int64_t>({0, -1, 1, 2}, {4}, target_dtype);
    message = error_message([&] { linear_cross_entropy(x, w, Tensor(), negative); });
    CHECK(contains(message, "target id -1"));
    CHECK(contains(message, "row 1"));
    // With ignore_index -1 the same targets are fine: zero logits give log(5) per row.
    CHECK(std::abs(linear_cross_entropy(x, w, Tensor(), negative, -1).item() - std::log(5.0)) < 1e-6);
  }
}

TEST_CASE("linear_cross_entropy: shape, dtype and device errors", "[ops][linear_cross_entropy]") {
  const Tensor x = Tensor::zeros({4, 3}), w = Tensor::zeros({5, 3}), t = Tensor::zeros({4}, DType::i64);
  CHECK(contains(error_message([&] { linear_cross_entropy(Tensor::zeros({4, 2}), w, Tensor(), t); }), "[N, D]"));
  CHECK(contains(error_message([&] { linear_cross_entropy(Tensor::zeros({2, 2, 3}), w, Tensor(), t); }), "[V, D]"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, w, Tensor::zeros({4}), t); }), "expected [5]"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, w, Tensor(), Tensor::zeros({3}, DType::i64)); }),
                 "expected [4]"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, w, Tensor(), Tensor::zeros({4})); }), "i32 or i64"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, Tensor::zeros({5, 3}, DType::f64), Tensor(), t); }),
                 "linear_cross_entropy"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, Tensor::zeros({0, 3}), Tensor(), t); }), "no classes"));
  CHECK(contains(error_message([&] { linear_cross_entropy(x, w, Tensor(), t, -100, -1); }), "chunk_rows"));
  CHECK_THROWS_AS(linear_cross_entropy(Tensor(), w, Tensor(), t), Error);
  CHECK_THROWS_AS(linear_cross_entropy(x, w, Tensor(), Tensor()), Error);
}

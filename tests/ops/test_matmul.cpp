// matmul and the CPU GEMM: finite-difference gradients (plain, batched, broadcast batch, shared 2-D
// operands, transposed and strided views), forward values against a naive product, the built-in
// blocked kernel against the same oracle, and bad inputs.
#include <cmath>

#include "ops/detail/cpu_gemm.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// The naive triple loop over the broadcast batch, in f64: the oracle for forward values.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2), "naive_matmul");
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1), count = numel(batch);
  Shape a_shape = batch, b_shape = batch, out_shape = batch;
  a_shape.insert(a_shape.end(), {m, k});
  b_shape.insert(b_shape.end(), {k, n});
  out_shape.insert(out_shape.end(), {m, n});
  const std::vector<double> av = expand(a, a_shape).to_vector<double>(), bv = expand(b, b_shape).to_vector<double>();
  std::vector<double> out(static_cast<size_t>(count * m * n), 0.0);
  for (int64_t t = 0; t < count; ++t)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < k; ++p) s += av[(t * m + i) * k + p] * bv[(t * k + p) * n + j];
        out[(t * m + i) * n + j] = s;
      }
  return Tensor::from_vector(out, out_shape);
}

Tensor product(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }

}  // namespace

TEST_CASE("matmul: gradients for plain, batched and broadcast shapes", "[ops][matmul]") {
  const std::pair<Shape, Shape> shapes[] = {
      {{3, 4}, {4, 5}},           // 2-D
      {{2, 3, 4}, {2, 4, 5}},     // batched
      {{2, 1, 3, 4}, {3, 4, 2}},  // batch dims broadcast both ways
      {{2, 3, 4}, {4, 5}},        // 2-D b shared by a batch of a
      {{3, 4}, {2, 4, 5}},        // 2-D a shared by a batch of b
      {{1, 3, 4}, {2, 4, 5}},     // size-1 batch dim
      {{2, 2, 1, 4}, {4, 1}},     // m = 1, n = 1
      {{1, 4}, {4, 3}},
  };
  for (const auto& [sa, sb] : shapes) {
    const uint64_t seed = fresh_seed();
    INFO(shape_str(sa) << " @ " << shape_str(sb) << " seed " << seed);
    Tensor a = random_tensor(sa, seed).set_requires_grad(true);
    Tensor b = random_tensor(sb, seed + 1).set_requires_grad(true);
    check_gradients(product, {a, b});
  }
}

TEST_CASE("matmul: gradients through transposed and strided views", "[ops][matmul]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({2, 4, 3}, seed).set_requires_grad(true);  // used as a^T: [2, 3, 4]
  Tensor b = random_tensor({5, 4}, seed + 1).set_requires_grad(true);  // used as b^T: [4, 5]
  // Both operands transposed (read in place as "stored transposed").
  check_gradients([](const std::vector<Tensor>& in) { return matmul(transpose(in[0], -1, -2), transpose(in[1], 0, 1)); },
                  {a, b});
  // Batch dims permuted: [4, 2, 3] viewed as a batch of 4 matrices [2, 3] with a non-flat batch stride.
  Tensor c = random_tensor({2, 4, 3}, seed + 2).set_requires_grad(true);
  Tensor d = random_tensor({4, 3, 2}, seed + 3).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return matmul(permute(in[0], {1, 0, 2}), in[1]); }, {c, d});
  // A column slice with a step: no single leading dimension describes it, so it is copied.
  Tensor e = random_tensor({3, 8}, seed + 4).set_requires_grad(true);
  Tensor f = random_tensor({4, 2}, seed + 5).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return matmul(slice(in[0], 1, 0, 8, 2), in[1]); }, {e, f});
}

TEST_CASE("matmul: forward values match the naive product", "[ops][matmul]") {
  const std::pair<Shape, Shape> shapes[] = {
      {{37, 65}, {65, 129}}, {{3, 1, 7, 33}, {2, 33, 17}}, {{4, 9, 20}, {20, 11}}, {{9, 20}, {3, 20, 6}}};
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const auto& [sa, sb] : shapes) {
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(dtype) << " " << shape_str(sa) << " @ " << shape_str(sb) << " seed " << seed);
      Tensor a = random_tensor(sa, seed, dtype), b = random_tensor(sb, seed + 1, dtype);
      const Tensor out = matmul(a, b);
      CHECK(out.dtype() == dtype);
      CHECK(relative_error(out, naive_matmul(a, b)) <= (dtype == DType::f64 ? 1e-14 : 1e-6));
    }
  }
  // Transposed operands give the same values as their contiguous copies.
  const uint64_t seed = fresh_seed();
  INFO("transposed, seed " << seed);
  Tensor a = random_tensor({2, 30, 20}, seed), b = random_tensor({40, 30}, seed + 1);
  const Tensor at = transpose(a, -1, -2), bt = transpose(b, 0, 1);
  CHECK(relative_error(matmul(at, bt), naive_matmul(contiguous(at), contiguous(bt))) <= 1e-14);
}

TEST_CASE("matmul: bf16 on the CPU multiplies in f32 and rounds once", "[ops][matmul]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = cast(random_tensor({3, 17, 40}, seed, DType::f32), DType::bf16);
  Tensor b = cast(random_tensor({40, 23}, seed + 1, DType::f32), DType::bf16);
  const Tensor out = matmul(a, b);
  CHECK(out.dtype() == DType::bf16);
  const Tensor reference = naive_matmul(cast(a, DType::f64), cast(b, DType::f64));
  // Exact inputs (bf16 values), f32 accumulation, one rounding to bf16 (relative 2^-9).
  CHECK(relative_error(out, reference) <= 4e-3);
}

TEST_CASE("cpu gemm: bf16 operands with an f32 output keep the f32 product", "[ops][matmul][gemm]") {
  // f32_output (attention logits): the product of the bf16 values, accumulated in f32 and not
  // rounded, so it equals the f32 GEMM of the same values bit for bit, accumulating into C or not.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = cast(random_tensor({2, 9, 13}, seed, DType::f32), DType::bf16);
  const Tensor b = cast(random_tensor({2, 11, 13}, seed + 1, DType::f32), DType::bf16);  // used transposed
  const Tensor a32 = cast(a, DType::f32), b32 = cast(b, DType::f32), c0 = random_tensor({2, 9, 11}, seed + 2, DType::f32);
  for (bool accumulate : {false, true}) {
    auto product = [&](const Tensor& x, const Tensor& y, bool f32_output) {
      Tensor out = Tensor::empty({2, 9, 11}, DType::f32);
      copy_(out, c0);
      cuda::Gemm g;
      g.dtype = x.dtype();
      g.batch = 2;
      g.m = 9;
      g.n = 11;
      g.k = 13;
      g.a = {x.raw_data(), 13, 9 * 13, false};
      g.b = {y.raw_data(), 13, 11 * 13, true};
      g.c = out.raw_data();
      g.ldc = 11;
      g.c_batch_stride = 9 * 11;
      g.accumulate = accumulate;
      g.f32_output = f32_output;
      detail::cpu_gemm(g);
      return out.to_vector<float>();
    };
    INFO("accumulate " << accumulate);
    CHECK(product(a, b, true) == product(a32, b32, false));
  }
}

TEST_CASE("matmul: empty and degenerate sizes", "[ops][matmul]") {
  // k = 0: a sum over nothing is 0.
  const Tensor z = matmul(Tensor::ones({3, 0}), Tensor::ones({0, 4}));
  CHECK(z.shape() == Shape{3, 4});
  CHECK(z.to_vector<float>() == std::vector<float>(12, 0.0f));
  CHECK(matmul(Tensor::ones({2, 0, 5}), Tensor::ones({5, 4})).shape() == Shape{2, 0, 4});
  CHECK(matmul(Tensor::ones({0, 3, 5}), Tensor::ones({5, 4})).shape() == Shape{0, 3, 4});
  // A known 2 x 2 product.
  const Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  const Tensor b = Tensor::from_vector<float>({5, 6, 7, 8}, {2, 2});
  CHECK(matmul(a, b).to_vector<float>() == std::vector<float>{19, 22, 43, 50});
}

TEST_CASE("matmul: bad inputs throw clear errors", "[ops][matmul]") {
  const std::string k_mismatch = error_message([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  CHECK(k_mismatch.find("matmul") != std::string::npos);
  CHECK(k_mismatch.find("inner dims") != std::string::npos);
  CHECK(k_mismatch.find("[2, 3]") != std::string::npos);
  CHECK(k_mismatch.find("[4, 5]") != std::string::npos);

  const std::string rank = error_message([] { matmul(Tensor::zeros({3}), Tensor::zeros({3, 2})); });
  CHECK(rank.find("rank >= 2") != std::string::npos);
  CHECK_THROWS_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3})), Error);

  const std::string batch = error_message([] { matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})); });
  CHECK(batch.find("batch dims") != std::string::npos);

  CHECK_THROWS_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}, DType::f64)), Error);  // dtypes differ
  CHECK_THROWS_AS(matmul(Tensor::zeros({2, 3}, DType::i64), Tensor::zeros({3, 2}, DType::i64)), Error);
  CHECK_THROWS_AS(matmul(Tensor(), Tensor::zeros({3, 2})), Error);
}

TEST_CASE("cpu gemm: the built-in blocked kernel matches the naive product", "[ops][matmul][gemm]") {
  // Sizes cross the kernel's block edges (64 rows, 256 of k, 512 columns); operands are plain,
  // transposed, shared across the batch, and C is accumulated into.
  struct Case {
    int64_t batch, m, n, k;
    bool a_transposed, b_transposed, b_shared, accumulate;
  };
  const Case cases[] = {{1, 70, 520, 300, false, false, false, false},
                        {2, 5, 9, 7, true, false, false, true},
                        {3, 65, 33, 257, false, true, true, false},
                        {2, 1, 1, 1, true, true, false, true}};
  for (DType dtype : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(dtype) << " batch " << c.batch << " m " << c.m << " n " << c.n << " k " << c.k << " seed " << seed);
      // Stored operands: A as [batch, m, k] or [batch, k, m]; B as [batch or 1, k, n] or [.., n, k].
      const Shape a_stored = c.a_transposed ? Shape{c.batch, c.k, c.m} : Shape{c.batch, c.m, c.k};
      const int64_t b_batch = c.b_shared ? 1 : c.batch;
      const Shape b_stored = c.b_transposed ? Shape{b_batch, c.n, c.k} : Shape{b_batch, c.k, c.n};
      const Tensor a = random_tensor(a_stored, seed, dtype), b = random_tensor(b_stored, seed + 1, dtype);
      const Tensor c0 = random_tensor({c.batch, c.m, c.n}, seed + 2, dtype);
      Tensor out = Tensor::empty({c.batch, c.m, c.n}, dtype);
      copy_(out, c0);

      cuda::Gemm g;
      g.dtype = dtype;
      g.batch = c.batch;
      g.m = c.m;
      g.n = c.n;
      g.k = c.k;
      g.a = {a.raw_data(), a.size(2), a.size(1) * a.size(2), c.a_transposed};
      g.b = {b.raw_data(), b.size(2), c.b_shared ? 0 : b.size(1) * b.size(2), c.b_transposed};
      g.c = out.raw_data();
      g.ldc = c.n;
      g.c_batch_stride = c.m * c.n;
      g.accumulate = c.accumulate;
      detail::gemm_blocked(g);

      const Tensor op_a = c.a_transposed ? transpose(a, 1, 2) : a;
      const Tensor op_b = c.b_transposed ? transpose(b, 1, 2) : b;
      Tensor expected = naive_matmul(op_a, op_b);
      if (c.accumulate) expected = add(expected, cast(c0, DType::f64));
      CHECK(relative_error(out, expected) <= (dtype == DType::f64 ? 1e-14 : 1e-6));
    }
  }
}

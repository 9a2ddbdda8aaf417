// embedding: gathered values (any ids shape, i32 and i64, non-contiguous weight and ids), the
// scatter-add gradient with repeated ids, and out-of-range ids.
#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
bool has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }

// Row v of the [vocab, dim] table is v * 10 + (0, 1, ..., dim - 1).
Tensor table(int64_t vocab, int64_t dim) {
  std::vector<float> values;
  for (int64_t v = 0; v < vocab; ++v)
    for (int64_t c = 0; c < dim; ++c) values.push_back(static_cast<float>(v * 10 + c));
  return Tensor::from_vector(values, {vocab, dim});
}
}  // namespace

TEST_CASE("embedding: gathers rows for any ids shape and id dtype", "[ops][embedding]") {
  Tensor w = table(5, 3);
  for (DType id_dtype : {DType::i32, DType::i64}) {
    INFO(dtype_name(id_dtype));
    Tensor ids = Tensor::from_vector<int64_t>({4, 0, 2, 2}, {2, 2}, id_dtype);
    Tensor y = embedding(w, ids);
    CHECK(y.shape() == Shape{2, 2, 3});
    CHECK(y.to_vector<float>() == std::vector<float>{40, 41, 42, 0, 1, 2, 20, 21, 22, 20, 21, 22});
  }
  // 0-dim ids give one row; empty ids give no rows.
  CHECK(embedding(w, Tensor::scalar(3, DType::i64)).to_vector<float>() == std::vector<float>{30, 31, 32});
  CHECK(embedding(w, Tensor::empty({0}, DType::i64)).shape() == Shape{0, 3});
  // Non-contiguous weight (a transposed [dim, vocab] matrix, as with tied weights) and ids.
  Tensor wt = transpose(contiguous(transpose(w, 0, 1)), 0, 1);
  REQUIRE_FALSE(wt.is_contiguous());
  Tensor ids_t = transpose(Tensor::from_vector<int64_t>({1, 3, 4, 0}, {2, 2}), 0, 1);  // [[1, 4], [3, 0]]
  CHECK(embedding(wt, ids_t).to_vector<float>() == std::vector<float>{10, 11, 12, 40, 41, 42, 30, 31, 32, 0, 1, 2});
}

TEST_CASE("embedding: repeated ids add their gradients", "[ops][embedding]") {
  Tensor w = Tensor::zeros({4, 2}).set_requires_grad(true);
  Tensor ids = Tensor::from_vector<int64_t>({1, 3, 1, 1, 0}, {5});
  Tensor dy = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {5, 2});
  backward(embedding(w, ids), dy);
  // Row 1 collects positions 0, 2, 3; row 3 position 1; row 0 position 4; row 2 nothing.
  CHECK(w.grad().to_vector<float>() == std::vector<float>{9, 10, 1 + 5 + 7, 2 + 6 + 8, 0, 0, 3, 4});
}

TEST_CASE("embedding: gradient matches finite differences", "[ops][embedding]") {
  const std::pair<Shape, DType> cases[] = {
      {{2, 3}, DType::i64}, {{7}, DType::i32}, {{}, DType::i64}, {{0}, DType::i64}};
  for (const auto& [ids_shape, id_dtype] : cases) {
    const uint64_t seed = fresh_seed();
    INFO(shape_str(ids_shape) << " " << dtype_name(id_dtype) << " seed " << seed);
    Tensor w = random_tensor({4, 3}, seed).set_requires_grad(true);
    Tensor ids = random_ids(ids_shape, 4, seed + 1, id_dtype);  // 4 rows: repeats are certain for 6+ ids
    // A zero-element output leaves nothing to check but still must run backward.
    if (numel(ids_shape) == 0) {
      backward(embedding(w, ids), Tensor::zeros({0, 3}, DType::f64));
      CHECK(w.grad().to_vector<double>() == std::vector<double>(12, 0.0));
      continue;
    }
    check_gradients([&](const std::vector<Tensor>& in) { return embedding(in[0], ids); }, {w});
  }
  // Through a transposed weight.
  const uint64_t seed = fresh_seed();
  INFO("transposed weight, seed " << seed);
  Tensor w = random_tensor({3, 5}, seed).set_requires_grad(true);
  Tensor ids = random_ids({3, 4}, 5, seed + 1);
  check_gradients([&](const std::vector<Tensor>& in) { return embedding(transpose(in[0], 0, 1), ids); }, {w});
}

TEST_CASE("embedding: bad ids and inputs throw errors that name them", "[ops][embedding]") {
  Tensor w = Tensor::zeros({5, 3});
  std::string m = error_message([&] { embedding(w, Tensor::from_vector<int64_t>({0, 1, 2, 7}, {2, 2})); });
  CHECK(has(m, "embedding"));
  CHECK(has(m, "id 7"));
  CHECK(has(m, "position [1, 1]"));
  CHECK(has(m, "[0, 5)"));
  m = error_message([&] { embedding(w, Tensor::from_vector<int32_t>({-1, 0}, {2})); });
  CHECK(has(m, "id -1"));
  CHECK(has(m, "position [0]"));
  CHECK(has(error_message([&] { embedding(w, Tensor::zeros({2})); }), "i32 or i64"));
  CHECK(has(error_message([&] { embedding(Tensor::zeros({5}), Tensor::zeros({2}, DType::i64)); }), "[vocab, dim]"));
  CHECK(has(error_message([&] { embedding(Tensor::zeros({5, 3}, DType::i64), Tensor::zeros({2}, DType::i64)); }),
            "floating"));
  CHECK_THROWS_AS(embedding(w, Tensor()), Error);
}

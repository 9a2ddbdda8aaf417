// Reductions (sum, mean, max over dim sets) and sum_to_shape: values against a naive oracle,
// finite-difference gradients, keepdim, negative dims, non-contiguous inputs, ties, bad inputs.
#include <cmath>
#include <limits>
#include <string>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

using Reduce = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);
struct ReduceCase {
  const char* name;
  Reduce f;
};
const ReduceCase kReductions[] = {{"sum", sum}, {"mean", mean}, {"max", max}};

// The oracle: visits x's elements in row-major order, finds each one's output cell from its
// indices along the kept dims, and folds it there in f64.
std::vector<double> naive_reduce(const std::string& kind, const Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t rank = x.dim();
  std::vector<bool> reduced(rank, dims.empty());
  for (int64_t d : dims) reduced[d < 0 ? d + rank : d] = true;
  int64_t outputs = 1;
  for (int64_t d = 0; d < rank; ++d)
    if (!reduced[d]) outputs *= x.size(d);
  std::vector<double> acc(outputs, kind == "max" ? -INFINITY : 0.0);
  std::vector<int64_t> count(outputs, 0);
  const std::vector<double> values = x.to_vector<double>();
  for (int64_t i = 0; i < static_cast<int64_t>(values.size()); ++i) {
    int64_t rest = i, cell = 0, scale = 1;
    for (int64_t d = rank - 1; d >= 0; --d) {
      const int64_t index = rest % x.size(d);
      rest /= x.size(d);
      if (!reduced[d]) {
        cell += index * scale;
        scale *= x.size(d);
      }
    }
    acc[cell] = kind == "max" ? std::max(acc[cell], values[i]) : acc[cell] + values[i];
    ++count[cell];
  }
  if (kind == "mean")
    for (int64_t k = 0; k < outputs; ++k) acc[k] /= static_cast<double>(count[k]);
  return acc;
}

Shape expected_shape(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Shape shape;
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool is_reduced = dims.empty();
    for (int64_t r : dims) is_reduced = is_reduced || (r < 0 ? r + x.dim() : r) == d;
    if (!is_reduced) shape.push_back(x.size(d));
    else if (keepdim) shape.push_back(1);
  }
  return shape;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tolerance) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tolerance * (1.0 + std::abs(want[i])));
  }
}

const std::vector<std::vector<int64_t>> kDimSets = {{}, {0}, {1}, {-1}, {0, 2}, {2, 0}, {-1, -3}, {1, -1}, {0, 1, 2}};

}  // namespace

TEST_CASE("reductions: values and shapes over dim sets, keepdim on and off", "[ops][reduce]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({3, 4, 5}, seed);
  for (const ReduceCase& c : kReductions) {
    for (const auto& dims : kDimSets) {
      for (bool keepdim : {false, true}) {
        INFO(c.name << " dims " << shape_str(dims) << " keepdim " << keepdim);
        const Tensor y = c.f(x, dims, keepdim);
        CHECK(y.shape() == expected_shape(x, dims, keepdim));
        CHECK(y.dtype() == DType::f64);
        check_close(y.to_vector<double>(), naive_reduce(c.name, x, dims), 1e-12);
      }
    }
  }
}

TEST_CASE("reductions: gradients match finite differences", "[ops][reduce]") {
  for (const ReduceCase& c : kReductions) {
    for (const auto& dims : kDimSets) {
      for (bool keepdim : {false, true}) {
        const uint64_t seed = fresh_seed();
        INFO(c.name << " dims " << shape_str(dims) << " keepdim " << keepdim << " seed " << seed);
        Tensor x = random_tensor({2, 3, 4}, seed).set_requires_grad(true);
        check_gradients([&](const std::vector<Tensor>& in) { return c.f(in[0], dims, keepdim); }, {x});
      }
    }
  }
}

TEST_CASE("reductions: non-contiguous inputs", "[ops][reduce]") {
  for (const ReduceCase& c : kReductions) {
    const uint64_t seed = fresh_seed();
    INFO(c.name << " seed " << seed);
    // A transposed view and a strided slice of it: neither is contiguous.
    const Tensor base = random_tensor({4, 6, 5}, seed);
    const Tensor view = slice(transpose(base, 0, 2), 1, 0, 6, 2);  // [5, 3, 4]
    REQUIRE(!view.is_contiguous());
    for (const auto& dims : kDimSets) {
      INFO("dims " << shape_str(dims));
      check_close(c.f(view, dims, false).to_vector<double>(), naive_reduce(c.name, view, dims), 1e-12);
    }
    Tensor x = base.detach().set_requires_grad(true);
    check_gradients(
        [&](const std::vector<Tensor>& in) { return c.f(slice(transpose(in[0], 0, 2), 1, 0, 6, 2), {0, -1}, true); },
        {x});
  }
}

TEST_CASE("reductions: 0-dim, size-1 and f32/bf16 inputs", "[ops][reduce]") {
  const Tensor scalar = Tensor::scalar(2.5, DType::f64);
  for (const ReduceCase& c : kReductions) {
    INFO(c.name);
    const Tensor y = c.f(scalar, {}, false);
    CHECK(y.dim() == 0);
    CHECK(y.item() == 2.5);
    const Tensor z = c.f(scalar, {}, true);
    CHECK(z.dim() == 0);
    // f32 and bf16 compute in f32 (or better) and keep their dtype.
    const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
    const std::vector<double> want = c.name == std::string("sum") ? std::vector<double>{6, 15}
                                     : c.name == std::string("mean") ? std::vector<double>{2, 5}
                                                                      : std::vector<double>{3, 6};
    CHECK(c.f(x, {1}, false).to_vector<double>() == want);
    const Tensor xb = cast(x, DType::bf16);
    CHECK(c.f(xb, {1}, false).dtype() == DType::bf16);
    CHECK(c.f(xb, {1}, false).to_vector<double>() == want);
  }
}

TEST_CASE("reductions: empty reductions", "[ops][reduce]") {
  const Tensor x = Tensor::zeros({3, 0}, DType::f64);
  CHECK(sum(x, {1}).to_vector<double>() == std::vector<double>{0, 0, 0});
  for (double v : mean(x, {1}).to_vector<double>()) CHECK(std::isnan(v));  // 0 / 0
  REQUIRE_THROWS_AS(max(x, {1}), Error);
  try {
    max(x, {1});
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("zero elements") != std::string::npos);
  }
  // Reducing the non-empty dim of an empty tensor gives an empty result.
  CHECK(max(x, {0}).shape() == Shape{0});
  CHECK(sum(x).item() == 0.0);
}

TEST_CASE("max: the gradient is shared equally among tied maxima", "[ops][reduce]") {
  Tensor x = Tensor::from_vector<double>({1, 3, 3, 2, 2, 2, 5, 0, 4}, {3, 3}).set_requires_grad(true);
  Tensor y = max(x, {1});
  CHECK(y.to_vector<double>() == std::vector<double>{3, 2, 5});
  backward(y, Tensor::from_vector<double>({6, 3, 1}, {3}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 3, 3, 1, 1, 1, 1, 0, 0});

  Tensor all = Tensor::from_vector<double>({4, 1, 4, 4}, {2, 2}).set_requires_grad(true);
  backward(max(all));
  const std::vector<double> g = all.grad().to_vector<double>();
  CHECK(g[0] == 1.0 / 3);
  CHECK(g[1] == 0.0);
  CHECK(g[2] == 1.0 / 3);
  CHECK(g[3] == 1.0 / 3);
}

TEST_CASE("max: NaN propagates", "[ops][reduce]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector<double>({1, nan, 3, 4, 5, 6}, {2, 3});
  const std::vector<double> y = max(x, {1}).to_vector<double>();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 6.0);
  CHECK(std::isnan(max(x).item()));
}

TEST_CASE("reductions: bad inputs throw clear errors", "[ops][reduce]") {
  const Tensor x = Tensor::zeros({2, 3});
  for (const ReduceCase& c : kReductions) {
    INFO(c.name);
    REQUIRE_THROWS_AS(c.f(x, {0, -2}, false), Error);  // the same dim twice
    try {
      c.f(x, {0, -2}, false);
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(message.find(c.name) != std::string::npos);
      CHECK(message.find("twice") != std::string::npos);
    }
    REQUIRE_THROWS_AS(c.f(x, {2}, false), Error);  // out of range
    try {
      c.f(x, {2}, false);
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("out of range") != std::string::npos);
    }
    CHECK_THROWS_AS(c.f(x, {-3}, false), Error);
    CHECK_THROWS_AS(c.f(Tensor::zeros({2}, DType::i64), {}, false), Error);
    CHECK_THROWS_AS(c.f(Tensor(), {}, false), Error);
  }
}

TEST_CASE("sum_to_shape: values, gradients and errors", "[ops][reduce]") {
  const Tensor g = Tensor::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum_to_shape(g, {3}).to_vector<double>() == std::vector<double>{5, 7, 9});
  CHECK(sum_to_shape(g, {2, 1}).to_vector<double>() == std::vector<double>{6, 15});
  CHECK(sum_to_shape(g, {1, 3}).shape() == Shape{1, 3});
  CHECK(sum_to_shape(g, {}).item() == 21.0);
  CHECK(sum_to_shape(g, {2, 3}).is_same(g));

  const std::vector<Shape> targets = {{3, 4}, {4}, {1, 4}, {3, 1}, {2, 1, 4}, {1, 1, 1}, {}};
  for (const Shape& target : targets) {
    const uint64_t seed = fresh_seed();
    INFO("to " << shape_str(target) << " seed " << seed);
    Tensor x = random_tensor({2, 3, 4}, seed).set_requires_grad(true);
    const Tensor y = sum_to_shape(x, target);
    CHECK(y.shape() == target);
    check_gradients([&](const std::vector<Tensor>& in) { return sum_to_shape(in[0], target); }, {x});
  }

  REQUIRE_THROWS_AS(sum_to_shape(g, {2}), Error);  // 3 does not reduce to 2
  try {
    sum_to_shape(g, {2});
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("sum_to_shape") != std::string::npos);
    CHECK(message.find("[2, 3]") != std::string::npos);
  }
  CHECK_THROWS_AS(sum_to_shape(g, {1, 2, 3, 1}), Error);  // more dims than the gradient
}

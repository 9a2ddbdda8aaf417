// softmax and log_softmax: values against the textbook formulas, finite-difference gradients over
// every dim (negative, non-last, non-contiguous), numerical stability, edge cases, bad inputs.
#include <cmath>
#include <string>

#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

using Softmax = Tensor (*)(const Tensor&, int64_t);
struct SoftmaxCase {
  const char* name;
  Softmax f;
};
const SoftmaxCase kOps[] = {{"softmax", softmax}, {"log_softmax", log_softmax}};

// The textbook formulas, composed from other ops (no max shift: fine for inputs in [-2, 2]).
Tensor reference(const std::string& name, const Tensor& x, int64_t dim) {
  const Tensor e = exp(x);
  const Tensor total = expand(sum(e, {dim}, true), x.shape());
  return name == "softmax" ? div(e, total) : sub(x, log(total));
}

void check_close(const Tensor& got, const Tensor& want, double tolerance) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("element " << i << ": got " << a[i] << ", want " << b[i]);
    CHECK(std::abs(a[i] - b[i]) <= tolerance * (1.0 + std::abs(b[i])));
  }
}

}  // namespace

TEST_CASE("softmax, log_softmax: values over every dim", "[ops][softmax]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({3, 4, 5}, seed, DType::f64, -2, 2);
  for (const SoftmaxCase& c : kOps) {
    for (int64_t dim : {0, 1, 2, -1, -2, -3}) {
      INFO(c.name << " dim " << dim);
      const Tensor y = c.f(x, dim);
      CHECK(y.shape() == x.shape());
      CHECK(y.dtype() == DType::f64);
      check_close(y, reference(c.name, x, dim), 1e-12);
    }
  }
  // Each softmax row sums to one.
  for (double total : sum(softmax(x, 1), {1}).to_vector<double>()) CHECK(std::abs(total - 1.0) < 1e-12);
}

TEST_CASE("softmax, log_softmax: gradients match finite differences", "[ops][softmax]") {
  for (const SoftmaxCase& c : kOps) {
    for (int64_t dim : {-1, 0, 1, -2}) {
      const uint64_t seed = fresh_seed();
      INFO(c.name << " dim " << dim << " seed " << seed);
      Tensor x = random_tensor({3, 4, 5}, seed, DType::f64, -2, 2).set_requires_grad(true);
      check_gradients([&](const std::vector<Tensor>& in) { return c.f(in[0], dim); }, {x});
    }
  }
}

TEST_CASE("softmax, log_softmax: non-contiguous inputs", "[ops][softmax]") {
  for (const SoftmaxCase& c : kOps) {
    const uint64_t seed = fresh_seed();
    INFO(c.name << " seed " << seed);
    const Tensor base = random_tensor({4, 6, 5}, seed, DType::f64, -2, 2);
    const Tensor view = slice(transpose(base, 0, 2), 1, 1, 6, 2);  // [5, 3, 4], strided
    REQUIRE(!view.is_contiguous());
    for (int64_t dim : {-1, 0, 1}) {
      INFO("dim " << dim);
      check_close(c.f(view, dim), reference(c.name, view, dim), 1e-12);
    }
    Tensor x = base.detach().set_requires_grad(true);
    check_gradients([&](const std::vector<Tensor>& in) { return c.f(slice(transpose(in[0], 0, 2), 1, 1, 6, 2), 1); },
                    {x});
  }
}

TEST_CASE("softmax, log_softmax: large inputs stay finite (the max is subtracted)", "[ops][softmax]") {
  // exp(1000) overflows f32 and f64; shifted by the max the values are those of [0, 1, 2].
  for (DType dtype : {DType::f32, DType::f64}) {
    INFO(dtype_name(dtype));
    const Tensor big = Tensor::from_vector<double>({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, dtype);
    const Tensor small = Tensor::from_vector<double>({0, 1, 2, 0, -1, -2}, {2, 3});
    const double tolerance = dtype == DType::f32 ? 1e-6 : 1e-12;
    check_close(softmax(big, -1), softmax(small, -1), tolerance);
    check_close(log_softmax(big, -1), log_softmax(small, -1), tolerance);
  }
  // log_softmax keeps very negative log-probabilities that softmax would round to 0.
  const Tensor far = Tensor::from_vector<double>({0, -2000}, {2});
  const std::vector<double> y = log_softmax(far, 0).to_vector<double>();
  CHECK(y[0] == 0.0);
  CHECK(y[1] == -2000.0);
}

TEST_CASE("softmax, log_softmax: size-1 dims, empty tensors, f32 and bf16", "[ops][softmax]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({4, 1}, seed).set_requires_grad(true);
  CHECK(softmax(x, 1).to_vector<double>() == std::vector<double>(4, 1.0));
  CHECK(log_softmax(x, 1).to_vector<double>() == std::vector<double>(4, 0.0));
  for (const SoftmaxCase& c : kOps) {
    INFO(c.name);
    // A constant output: the gradient is exactly zero.
    check_gradients([&](const std::vector<Tensor>& in) { return c.f(in[0], -1); }, {x});
    CHECK(c.f(Tensor::zeros({0, 3}, DType::f64), 1).shape() == Shape{0, 3});
    CHECK(c.f(Tensor::zeros({3, 0}, DType::f64), 1).shape() == Shape{3, 0});
    // f32 and bf16 keep their dtype and agree with f64 (on the same rounded inputs) to their precision.
    const Tensor wide = random_tensor({3, 7}, seed + 1, DType::f64, -3, 3);
    for (DType dtype : {DType::f32, DType::bf16}) {
      INFO(dtype_name(dtype));
      const Tensor rounded = cast(wide, dtype);
      const Tensor y = c.f(rounded, 1);
      CHECK(y.dtype() == dtype);
      CHECK(relative_error(y, c.f(cast(rounded, DType::f64), 1)) <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("softmax, log_softmax: bad inputs throw clear errors", "[ops][softmax]") {
  const Tensor x = Tensor::zeros({2, 3});
  for (const SoftmaxCase& c : kOps) {
    INFO(c.name);
    REQUIRE_THROWS_AS(c.f(x, 2), Error);
    try {
      c.f(x, 2);
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(message.find(c.name) != std::string::npos);
      CHECK(message.find("out of range") != std::string::npos);
    }
    CHECK_THROWS_AS(c.f(x, -3), Error);
    CHECK_THROWS_AS(c.f(Tensor::zeros({2, 3}, DType::i32), -1), Error);
    CHECK_THROWS_AS(c.f(Tensor::scalar(1.0), 0), Error);
    CHECK_THROWS_AS(c.f(Tensor(), -1), Error);
  }
}

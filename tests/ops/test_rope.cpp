// Rotary embedding: values against the complex-number formula, position restarts per chunk, the
// KV-cache offset, finite-difference gradients (f64) and bad inputs.
#include <cmath>
#include <complex>

#include "ops/ops.h"
#include "ops/rope.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// Brute force: each pair is the complex number x_{2i} + i x_{2i+1}, multiplied by e^{i p θ_i}.
std::vector<double> rope_reference(const Tensor& x, int64_t chunk, int64_t start, double base) {
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), d = x.size(3);
  std::vector<double> v = x.to_vector<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < d / 2; ++i) {
          const double position = static_cast<double>(start + t % chunk);
          const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(d));
          const int64_t at = ((b * L + t) * H + h) * d + 2 * i;
          const std::complex<double> z = std::complex<double>(v[at], v[at + 1]) * std::polar(1.0, position * theta);
          v[at] = z.real();
          v[at + 1] = z.imag();
        }
  return v;
}

void check_close(const std::vector<double>& a, const std::vector<double>& b, double tolerance) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  INFO("max abs difference " << worst);
  CHECK(worst <= tolerance);
}

}  // namespace

TEST_CASE("rope: values match the complex rotation e^{i p theta}", "[ops][rope]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({2, 7, 3, 8}, seed);
  for (const auto& [chunk, base] : {std::pair<int64_t, double>{7, 10000.0}, {3, 10000.0}, {4, 100000.0}}) {
    INFO("chunk " << chunk << " base " << base);
    check_close(rope(x, chunk, 0, base).to_vector<double>(), rope_reference(x, chunk, 0, base), 1e-12);
  }
  // f32 is computed in f32: close to the f64 formula at f32 precision.
  check_close(rope(cast(x, DType::f32), 7).to_vector<double>(), rope_reference(x, 7, 0, 10000.0), 1e-5);
}

TEST_CASE("rope: positions restart at 0 in every chunk", "[ops][rope]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // The same token content in every chunk gives the same rotated values in every chunk.
  Tensor one_chunk = random_tensor({1, 3, 2, 4}, seed);
  std::vector<double> repeated;
  for (int copy = 0; copy < 3; ++copy)
    for (double v : one_chunk.to_vector<double>()) repeated.push_back(v);
  Tensor x = Tensor::from_vector(repeated, {1, 9, 2, 4});
  const std::vector<double> y = rope(x, 3).to_vector<double>();
  const std::vector<double> first = rope(one_chunk, 3).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == first[i % first.size()]);
  // Position 0 is the identity.
  CHECK(y[0] == one_chunk.to_vector<double>()[0]);
}

TEST_CASE("rope: a start position continues a partial chunk", "[ops][rope]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({2, 8, 2, 6}, seed);
  const std::vector<double> full = rope(x, 8).to_vector<double>();
  // Tokens 5..7 of the chunk, processed alone with the cache length 5 as start position.
  const std::vector<double> tail = rope(contiguous(slice(x, 1, 5, 8)), 8, 5).to_vector<double>();
  const std::vector<double> expected = contiguous(slice(Tensor::from_vector(full, x.shape()), 1, 5, 8)).to_vector<double>();
  check_close(tail, expected, 0.0);
}

TEST_CASE("rope: rotated dot products depend only on the position difference", "[ops][rope]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // The same q at every position and the same k at every position: <R(p)q, R(p')k> = <q, R(p'-p)k>.
  Tensor q = random_tensor({1, 1, 1, 8}, seed), k = random_tensor({1, 1, 1, 8}, seed + 1);
  const Shape shape{1, 6, 1, 8};
  const std::vector<double> rq = rope(contiguous(expand(q, shape)), 6).to_vector<double>();
  const std::vector<double> rk = rope(contiguous(expand(k, shape)), 6).to_vector<double>();
  auto dot = [&](int p, int pk) {
    double s = 0;
    for (int e = 0; e < 8; ++e) s += rq[p * 8 + e] * rk[pk * 8 + e];
    return s;
  };
  CHECK(std::abs(dot(0, 2) - dot(3, 5)) < 1e-12);
  CHECK(std::abs(dot(4, 1) - dot(5, 2)) < 1e-12);
}

TEST_CASE("rope: gradients match finite differences", "[ops][rope]") {
  for (const auto& [chunk, start, length] : {std::tuple<int64_t, int64_t, int64_t>{3, 0, 6}, {6, 0, 6}, {8, 2, 6}}) {
    const uint64_t seed = fresh_seed();
    INFO("chunk " << chunk << " start " << start << " seed " << seed);
    Tensor x = random_tensor({2, length, 2, 4}, seed).set_requires_grad(true);
    const int64_t c = chunk, s = start;
    check_gradients([c, s](const std::vector<Tensor>& in) { return rope(in[0], c, s); }, {x});
  }
  // A non-contiguous input (a transposed view).
  const uint64_t seed = fresh_seed();
  INFO("transposed input, seed " << seed);
  Tensor x = random_tensor({2, 3, 5, 4}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return rope(transpose(in[0], 1, 2), 5); }, {x});
}

TEST_CASE("rope: bf16 is computed in f32 and rounded", "[ops][rope]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = cast(random_tensor({1, 5, 2, 6}, seed, DType::f32), DType::bf16);
  const Tensor y = rope(x, 5);
  CHECK(y.dtype() == DType::bf16);
  const std::vector<double> expected = cast(rope(cast(x, DType::f32), 5), DType::bf16).to_vector<double>();
  check_close(y.to_vector<double>(), expected, 0.0);
}

TEST_CASE("rope: bad inputs throw clear errors", "[ops][rope]") {
  auto message_of = [](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  Tensor x = Tensor::zeros({1, 4, 2, 6});
  CHECK(message_of([&] { rope(Tensor::zeros({1, 4, 2, 5}), 4); }).find("even") != std::string::npos);
  CHECK(message_of([&] { rope(Tensor::zeros({4, 2, 6}), 4); }).find("[batch, length, heads, head_dim]") != std::string::npos);
  CHECK(message_of([&] { rope(x, 0); }).find("chunk_size") != std::string::npos);
  CHECK(message_of([&] { rope(x, 4, 4); }).find("start_position") != std::string::npos);
  CHECK(message_of([&] { rope(x, 6, 3); }).find("cross the end of the chunk") != std::string::npos);
  CHECK(message_of([&] { rope(Tensor::zeros({1, 4, 2, 6}, DType::i64), 4); }).find("floating") != std::string::npos);
  CHECK_THROWS_AS(rope(Tensor(), 4), Error);
}

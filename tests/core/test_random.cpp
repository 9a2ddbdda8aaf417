// core/ random numbers: Philox 4x32-10 against the published known answers, the distributions'
// moments within statistical bounds, and reproducibility from (seed, offset).
//
// The statistical checks use fresh seeds and bounds of 6 standard errors, so a correct generator
// fails one with probability about 2e-9 per check.
#include <cmath>

#include "base/philox.h"
#include "core/random.h"
#include "support/errors.h"
#include "support/statistics.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

constexpr double kSigmas = 6.0;
constexpr int64_t kSamples = 200000;

}  // namespace

TEST_CASE("Philox 4x32-10 reproduces the Random123 known-answer vectors", "[core][random]") {
  // Random123, tests/kat_vectors (github.com/DEShawResearch/random123, commit 9545ff6), the
  // three "philox4x32 10" lines: counter (4 words), key (2 words) -> output (4 words).
  struct Case {
    philox::Uint4 counter;
    uint32_t key0, key1;
    philox::Uint4 expected;
  };
  const Case cases[] = {
      {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, 0x00000000, 0x00000000,
       {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, 0xffffffff, 0xffffffff,
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0,
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Case& c : cases) {
    const philox::Uint4 out = philox::philox4x32(c.counter, c.key0, c.key1);
    INFO(std::hex << "counter " << c.counter.x << " key " << c.key0 << " -> " << out.x << " " << out.y << " " << out.z
                  << " " << out.w);
    CHECK(out.x == c.expected.x);
    CHECK(out.y == c.expected.y);
    CHECK(out.z == c.expected.z);
    CHECK(out.w == c.expected.w);
  }
}

TEST_CASE("Philox streams: (seed, offset, block) map onto key and counter words", "[core][random]") {
  // The key is the seed, the counter is (block low, block high, offset low, offset high).
  const uint64_t seed = 0x299f31d0a4093822ull, offset = 0x0370734413198a2eull, block = 0x85a308d3243f6a88ull;
  const philox::Uint4 out = philox::block(seed, offset, block);
  CHECK(out.x == 0xd16cfe09);
  CHECK(out.y == 0x94fdcceb);
  CHECK(out.z == 0x5001e420);
  CHECK(out.w == 0x24126ea1);
  // A uniform takes the top 24 bits of one word: element 4b + lane reads word `lane` of block b.
  const uint64_t small_block = 0x1243f6a88ull;
  const philox::Uint4 words = philox::block(seed, offset, small_block);
  for (int lane = 0; lane < 4; ++lane)
    CHECK(philox::uniform(seed, offset, small_block * 4 + lane) ==
          static_cast<float>(philox::word(words, lane) >> 8) / 16777216.0f);
}

TEST_CASE("uniform_: values in [low, high) with the right mean and variance", "[core][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const double low = -3.0, high = 5.0, width = high - low;
  const Tensor t = Tensor::empty({kSamples}, DType::f64);
  uniform_(t, low, high, gen);
  const std::vector<double> v = t.to_vector<double>();
  for (double x : v) REQUIRE((x >= low && x < high));
  const Moments m = moments(v);
  const double n = static_cast<double>(kSamples);
  CHECK(std::abs(m.mean - (low + high) / 2) < kSigmas * width / std::sqrt(12.0 * n));
  // Var of U(a, b) is w^2/12; the sample variance's standard error is sqrt(mu4 - sigma^4)/sqrt(n),
  // with mu4 = w^4/80 for a uniform.
  const double variance = width * width / 12;
  const double variance_error = std::sqrt(std::pow(width, 4) / 80 - variance * variance) / std::sqrt(n);
  CHECK(std::abs(m.variance - variance) < kSigmas * variance_error);
  // The values sit on the 2^-24 grid of [0, 1) (24 random bits, exact in f32).
  Tensor unit = Tensor::empty({1000}, DType::f64);
  uniform_(unit, 0.0, 1.0, gen);
  for (double x : unit.to_vector<double>()) REQUIRE(x * 16777216.0 == std::floor(x * 16777216.0));
}

TEST_CASE("normal_: mean, variance and the one-sigma fraction", "[core][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  const double mean = 1.5, stddev = 2.0;
  const Tensor t = Tensor::empty({kSamples}, DType::f64);
  normal_(t, mean, stddev, gen);
  const std::vector<double> v = t.to_vector<double>();
  const Moments m = moments(v);
  const double n = static_cast<double>(kSamples);
  CHECK(std::abs(m.mean - mean) < kSigmas * stddev / std::sqrt(n));
  // The sample variance of a normal has standard error sigma^2 sqrt(2 / (n - 1)).
  CHECK(std::abs(m.variance - stddev * stddev) < kSigmas * stddev * stddev * std::sqrt(2.0 / (n - 1)));
  // A fraction erf(1/sqrt 2) = 0.6827 lies within one sigma (a binomial count).
  const double p = std::erf(1.0 / std::sqrt(2.0));
  int64_t inside = 0;
  for (double x : v) inside += std::abs(x - mean) < stddev;
  CHECK(std::abs(static_cast<double>(inside) / n - p) < kSigmas * std::sqrt(p * (1 - p) / n));
  // Box-Muller: elements 2k and 2k+1 share a radius (cos and sin of one angle).
  for (uint64_t k = 0; k < 50; ++k) {
    const double a = philox::normal(seed, 7, 2 * k), b = philox::normal(seed, 7, 2 * k + 1);
    const philox::Uint4 u = philox::block(seed, 7, k);
    const double u1 = (static_cast<double>(u.x >> 8) + 1.0) / 16777216.0;
    CHECK(std::abs(a * a + b * b + 2.0 * std::log(u1)) <= 1e-12 * (1.0 - 2.0 * std::log(u1)));
  }
}

TEST_CASE("random fills are reproducible from (seed, offset)", "[core][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator a(seed), b(seed);
  const Tensor first_a = randn({64}, DType::f32, Device::cpu(), a);
  const Tensor first_b = randn({64}, DType::f32, Device::cpu(), b);
  CHECK(first_a.to_vector<float>() == first_b.to_vector<float>());
  CHECK(a.offset == 1);  // each draw advances the offset by one
  const Tensor second_a = randn({64}, DType::f32, Device::cpu(), a);
  CHECK(second_a.to_vector<float>() != first_a.to_vector<float>());  // a new offset is a new stream
  // A generator positioned at offset 1 replays the second draw.
  Generator replay(seed);
  replay.offset = 1;
  CHECK(randn({64}, DType::f32, Device::cpu(), replay).to_vector<float>() == second_a.to_vector<float>());
  // take() hands out the current (seed, offset) and moves on.
  Generator g(seed);
  const Generator taken = g.take();
  CHECK(taken.seed == seed);
  CHECK(taken.offset == 0);
  CHECK(g.offset == 1);
  // Another seed is another stream.
  Generator other(seed + 1);
  CHECK(randn({64}, DType::f32, Device::cpu(), other).to_vector<float>() != first_a.to_vector<float>());
  // manual_seed resets the default generator.
  manual_seed(seed);
  const std::vector<float> x = rand({16}).to_vector<float>();
  manual_seed(seed);
  CHECK(rand({16}).to_vector<float>() == x);
  CHECK(default_generator().offset == 1);
}

TEST_CASE("random fills: element i takes Philox index i in row-major order", "[core][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // A prefix of a longer draw from the same (seed, offset).
  Generator g10(seed), g25(seed);
  const std::vector<double> short_draw = rand({10}, DType::f64, Device::cpu(), g10).to_vector<double>();
  const std::vector<double> long_draw = rand({5, 5}, DType::f64, Device::cpu(), g25).to_vector<double>();
  CHECK(std::vector<double>(long_draw.begin(), long_draw.begin() + 10) == short_draw);
  // A strided (transposed) destination gets the values in its own logical order.
  Generator gc(seed), gt(seed);
  const Tensor contiguous = Tensor::empty({3, 4});
  normal_(contiguous, 0.0, 1.0, gc);
  const Tensor storage = Tensor::empty({4, 3});
  const Tensor transposed = storage.as_strided({3, 4}, {1, 3}, 0);
  normal_(transposed, 0.0, 1.0, gt);
  CHECK(transposed.to_vector<float>() == contiguous.to_vector<float>());
  // Every floating dtype stores the same value rounded: bf16 equals the f32 draw rounded to bf16.
  Generator gf(seed), gb(seed);
  const std::vector<float> f32 = randn({100}, DType::f32, Device::cpu(), gf).to_vector<float>();
  const Tensor b = randn({100}, DType::bf16, Device::cpu(), gb);
  for (size_t i = 0; i < f32.size(); ++i) REQUIRE(b.data<bf16>()[i].bits == bf16(f32[i]).bits);
  // Integer tensors cannot hold random floats.
  CHECK(contains(error_message([] { rand({3}, DType::i64); }), "expected a floating dtype"));
}

TEST_CASE("truncated_normal_: inside the bounds, deterministic, and a plain normal when nothing is cut",
          "[core][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const double mean = -1.0, stddev = 2.0;
  for (double bound : {0.5, 2.0, 6.0}) {
    INFO("bound " << bound);
    Generator gen(seed);
    const Tensor t = Tensor::empty({20000}, DType::f64);
    truncated_normal_(t, mean, stddev, bound, gen);
    const std::vector<double> v = t.to_vector<double>();
    for (double x : v) REQUIRE(std::abs(x - mean) <= bound);
    // Symmetric truncation at c = bound/stddev keeps the mean and shrinks the variance to
    // stddev^2 (1 - 2 c phi(c) / (2 Phi(c) - 1)). A truncated normal has less kurtosis than a
    // normal, so sigma_t^2 sqrt(2 / n) bounds the sample variance's standard error.
    const double c = bound / stddev;
    const double phi = std::exp(-c * c / 2) / std::sqrt(2 * M_PI), mass = std::erf(c / std::sqrt(2.0));
    const double variance = stddev * stddev * (1 - 2 * c * phi / mass);
    const double n = static_cast<double>(v.size());
    const Moments m = moments(v);
    CHECK(std::abs(m.mean - mean) < kSigmas * std::sqrt(variance / n));
    CHECK(std::abs(m.variance - variance) < kSigmas * variance * std::sqrt(2.0 / n));
    Generator again(seed);
    const Tensor u = Tensor::empty({20000}, DType::f64);
    truncated_normal_(u, mean, stddev, bound, again);
    CHECK(u.to_vector<double>() == v);
  }
  // With a bound nothing reaches, the draw is the normal stream itself.
  Generator gt(seed), gn(seed);
  const Tensor truncated = Tensor::empty({1000}, DType::f64);
  truncated_normal_(truncated, mean, stddev, 1e9, gt);
  const Tensor plain = Tensor::empty({1000}, DType::f64);
  normal_(plain, mean, stddev, gn);
  CHECK(truncated.to_vector<double>() == plain.to_vector<double>());
  CHECK(contains(error_message([] { truncated_normal_(Tensor::empty({2}), 0.0, 1.0, 0.0); }),
                 "bound must be positive, got 0"));
}

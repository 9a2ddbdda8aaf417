// dropout: the mask rule (Philox uniform >= p), keep rate, scaling, reproducibility from the
// generator, the regenerated mask in backward, identity cases and bad p.
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "base/philox.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {
bool has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("dropout: element i is kept iff its Philox uniform is >= p, and scaled by 1/(1-p)", "[ops][dropout]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const double p = 0.35;
  Generator gen(seed);
  gen.offset = 7;  // any position in the generator's sequence
  Tensor x = random_tensor({13, 11}, seed + 1, DType::f32, 0.5, 1.5);
  Tensor y = dropout(x, p, true, gen);
  CHECK(gen.offset == 8);  // one stream taken
  const std::vector<float> xs = x.to_vector<float>(), ys = y.to_vector<float>();
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  for (size_t i = 0; i < xs.size(); ++i) {
    const bool keep = philox::uniform(seed, 7, i) >= p;
    INFO("element " << i);
    CHECK(ys[i] == (keep ? xs[i] * scale : 0.0f));
  }
}

TEST_CASE("dropout: keep rate over 100k elements is 1 - p within 4 sigma", "[ops][dropout]") {
  for (double p : {0.1, 0.5, 0.9}) {
    const uint64_t seed = fresh_seed();
    INFO("p " << p << " seed " << seed);
    Generator gen(seed);
    const int64_t n = 100000;
    const std::vector<float> y = dropout(Tensor::ones({n}), p, true, gen).to_vector<float>();
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0, other = 0;  // other: neither dropped (0) nor kept (scale)
    for (float v : y) {
      kept += v == scale;
      other += v != 0.0f && v != scale;
    }
    CHECK(other == 0);
    const double sigma = std::sqrt(n * p * (1.0 - p));
    CHECK(std::abs(static_cast<double>(kept) - n * (1.0 - p)) <= 4.0 * sigma);
  }
}

TEST_CASE("dropout: reproducible from the generator state, different for the next draw", "[ops][dropout]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({64, 33}, seed + 1, DType::f32);
  Generator a(seed), b(seed);
  const Tensor first = dropout(x, 0.5, true, a);
  CHECK(first.to_vector<float>() == dropout(x, 0.5, true, b).to_vector<float>());
  CHECK(dropout(x, 0.5, true, a).to_vector<float>() != first.to_vector<float>());
  // The mask follows the logical (row-major) element order, whatever the input's layout.
  Tensor t = transpose(x, 0, 1);
  Generator c(seed), d(seed);
  CHECK(dropout(t, 0.5, true, c).to_vector<float>() == dropout(contiguous(t), 0.5, true, d).to_vector<float>());
  // bf16 inputs drop the same elements.
  Generator e(seed);
  const std::vector<float> low = dropout(cast(x, DType::bf16), 0.5, true, e).to_vector<float>();
  const std::vector<float> full = first.to_vector<float>();
  int64_t differ = 0;
  for (size_t i = 0; i < low.size(); ++i) differ += (low[i] == 0.0f) != (full[i] == 0.0f);
  CHECK(differ == 0);
}

TEST_CASE("dropout: backward regenerates the forward mask", "[ops][dropout]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  Tensor x = random_tensor({40, 25}, seed + 1, DType::f32, 0.5, 1.5).set_requires_grad(true);
  Tensor y = dropout(x, 0.3, true, gen);
  dropout(x, 0.3, true, gen);  // the generator moves on; y's backward must not care
  backward(y, Tensor::ones(y.shape()));
  const std::vector<float> ys = y.to_vector<float>(), g = x.grad().to_vector<float>();
  const float scale = static_cast<float>(1.0 / 0.7);
  int64_t wrong = 0;
  for (size_t i = 0; i < ys.size(); ++i) wrong += g[i] != (ys[i] == 0.0f ? 0.0f : scale);
  CHECK(wrong == 0);

  // Finite differences: every call of the function must draw the same mask, so it builds its
  // generator from the seed each time.
  Tensor a = random_tensor({6, 7}, seed + 2).set_requires_grad(true);
  check_gradients(
      [&](const std::vector<Tensor>& in) {
        Generator fixed(seed);
        return dropout(transpose(in[0], 0, 1), 0.4, true, fixed);
      },
      {a});
}

TEST_CASE("dropout: p = 0 and evaluation mode are the identity; bad p is an error", "[ops][dropout]") {
  Tensor x = Tensor::ones({3, 3});
  Generator gen(1);
  CHECK(dropout(x, 0.0, true, gen).is_same(x));
  CHECK(dropout(x, 0.7, false, gen).is_same(x));
  CHECK(gen.offset == 0);  // nothing drawn
  for (double p : {-0.1, 1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("p " << p);
    const std::string m = error_message([&] { dropout(x, p, true, gen); });
    CHECK(has(m, "dropout"));
    CHECK(has(m, "[0, 1)"));
  }
  CHECK(has(error_message([&] { dropout(x, 1.0, false, gen); }), "[0, 1)"));  // checked in evaluation too
  CHECK(has(error_message([&] { dropout(Tensor::zeros({2}, DType::i64), 0.5, true, gen); }), "floating"));
}

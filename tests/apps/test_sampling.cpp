// Next-token sampling (apps/lib/sampling.h): greedy and temperature 0 are the arg max; top-k and
// top-p never pick outside the set they allow (computed here independently); a seed reproduces the
// draws; ties at the k-th probability are kept and ties in top-p's order go by increasing id; the drawn
// frequencies match softmax(l / T) within 5 standard errors; the repetition penalty
// divides positive and multiplies negative logits; bad parameters are named.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "apps/lib/sampling.h"
#include "support/statistics.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

std::vector<float> random_logits(size_t V, uint64_t seed, double scale = 3.0) {
  const std::vector<double> values = random_tensor({static_cast<int64_t>(V)}, seed).to_vector<double>();
  std::vector<float> logits;
  for (double v : values) logits.push_back(static_cast<float>(scale * v));
  return logits;
}

SamplingOptions with(double temperature, int64_t top_k, double top_p, double penalty = 1.0) {
  return {.greedy = false, .temperature = temperature, .top_k = top_k, .top_p = top_p, .repetition_penalty = penalty};
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p;
  double total = 0;
  for (float l : logits) total += p.emplace_back(std::exp((l - top) / temperature));
  for (double& x : p) x /= total;
  return p;
}

// Ids sorted by decreasing logit.
std::vector<int32_t> by_logit(const std::vector<float>& logits) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  return ids;
}

}  // namespace

TEST_CASE("sampling: greedy and temperature 0 take the arg max, deterministically", "[apps][sampling]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = random_logits(37, seed + uint64_t(trial));
    const int32_t best = by_logit(logits)[0];
    SamplingOptions greedy;
    greedy.greedy = true;
    Sampler a(greedy, seed), b(with(0.0, 5, 0.5), seed + 1000);
    for (int step = 0; step < 3; ++step) {
      CHECK(a.next(logits, {}) == best);
      CHECK(b.next(logits, {}) == best);
    }
  }
  // Ties go to the lowest id.
  Sampler tie(with(0.0, 0, 1.0), 1);
  CHECK(tie.next({1.0f, 3.0f, 3.0f, -2.0f}, {}) == 1);
}

TEST_CASE("sampling: top-k and top-p never pick outside the set they allow", "[apps][sampling]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const size_t V = 50;
  for (int trial = 0; trial < 10; ++trial) {
    const std::vector<float> logits = random_logits(V, seed + uint64_t(trial));
    const std::vector<int32_t> order = by_logit(logits);
    const double temperature = 0.5 + 0.25 * trial;
    const std::vector<double> p = softmax(logits, temperature);

    const int64_t k = 1 + trial % 7;
    const std::unordered_set<int32_t> top_k(order.begin(), order.begin() + k);
    // Top-p: the smallest prefix of the sorted tokens whose mass reaches p.
    const double top_p = 0.3 + 0.06 * trial;
    std::unordered_set<int32_t> nucleus;
    double mass = 0;
    for (int32_t id : order) {
      if (mass >= top_p) break;
      nucleus.insert(id);
      mass += p[static_cast<size_t>(id)];
    }
    INFO("trial " << trial << ": k " << k << ", top-p " << top_p << " (" << nucleus.size() << " tokens)");
    Sampler k_sampler(with(temperature, k, 1.0), seed + 100 + uint64_t(trial));
    Sampler p_sampler(with(temperature, 0, top_p), seed + 200 + uint64_t(trial));
    std::unordered_set<int32_t> seen_k, seen_p;
    for (int draw = 0; draw < 400; ++draw) {
      const int32_t a = k_sampler.next(logits, {}), b = p_sampler.next(logits, {});
      CHECK(top_k.count(a) == 1);
      CHECK(nucleus.count(b) == 1);
      seen_k.insert(a), seen_p.insert(b);
    }
    CHECK((seen_k.size() > 1) == (k > 1));  // more than the arg max is reachable when allowed
    // The distributions put exactly their mass on the allowed sets.
    const std::vector<double> dk = k_sampler.distribution(logits, {}), dp = p_sampler.distribution(logits, {});
    for (size_t i = 0; i < V; ++i) {
      CHECK((dk[i] > 0) == (top_k.count(static_cast<int32_t>(i)) == 1));
      CHECK((dp[i] > 0) == (nucleus.count(static_cast<int32_t>(i)) == 1));
    }
  }
}

TEST_CASE("sampling: ties at the k-th probability are kept, ties in top-p go by increasing id", "[apps][sampling]") {
  // Three equal logits: each has p = e^2 / (3 e^2 + e^0 + e^-1) ~ 0.314.
  const std::vector<float> logits = {0.0f, 2.0f, -1.0f, 2.0f, 2.0f};
  auto kept = [&](const SamplingOptions& options) {
    const std::vector<double> p = Sampler(options, 1).distribution(logits, {});
    std::vector<int> ids;
    for (size_t i = 0; i < p.size(); ++i)
      if (p[i] > 0) ids.push_back(static_cast<int>(i));
    return ids;
  };
  CHECK(kept(with(1.0, 2, 1.0)) == std::vector<int>{1, 3, 4});  // the 2nd largest ties with the 3rd
  CHECK(kept(with(1.0, 4, 1.0)) == std::vector<int>{0, 1, 3, 4});
  CHECK(kept(with(1.0, 0, 0.5)) == std::vector<int>{1, 3});     // mass before id 4: 0.628 >= 0.5
  CHECK(kept(with(1.0, 0, 0.95)) == std::vector<int>{0, 1, 3, 4});
  CHECK(kept(with(1.0, 0, 0.3)) == std::vector<int>{1});
  // Top-p renormalises over what top-k kept: of {1, 3, 4} (1/3 each), 0.5 keeps two.
  CHECK(kept(with(1.0, 2, 0.5)) == std::vector<int>{1, 3});
}

TEST_CASE("sampling: a seed reproduces the draws, another seed does not", "[apps][sampling]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<float> logits = random_logits(64, seed, 1.0);
  auto draws = [&](uint64_t s) {
    Sampler sampler(with(1.3, 20, 0.95, 1.2), s);
    std::vector<int32_t> out;
    std::unordered_set<int32_t> context;
    for (int i = 0; i < 200; ++i) context.insert(out.emplace_back(sampler.next(logits, context)));
    return out;
  };
  CHECK(draws(seed) == draws(seed));
  CHECK(draws(seed) != draws(seed + 1));
}

TEST_CASE("sampling: drawn frequencies match softmax(l / T)", "[apps][sampling]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 2.0f, 0.3f};
  const double temperature = 1.7;
  const std::vector<double> p = softmax(logits, temperature);
  Sampler sampler(with(temperature, 0, 1.0), seed);
  const int n = 20000;
  std::vector<std::vector<double>> indicators(logits.size(), std::vector<double>(n));
  for (int draw = 0; draw < n; ++draw) indicators[static_cast<size_t>(sampler.next(logits, {}))][draw] = 1.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const Moments m = moments(indicators[i]);
    INFO("token " << i << ": frequency " << m.mean << ", probability " << p[i]);
    CHECK(std::abs(m.mean - p[i]) < 5 * std::sqrt(p[i] * (1 - p[i]) / n));  // 5 standard errors
  }
}

TEST_CASE("sampling: the repetition penalty divides positive and multiplies negative logits", "[apps][sampling]") {
  SamplingOptions options = with(0.0, 0, 1.0, 2.0);
  Sampler greedy(options, 1);
  CHECK(greedy.next({2.0f, 1.5f}, {}) == 0);
  CHECK(greedy.next({2.0f, 1.5f}, {0}) == 1);     // 2 / 2 = 1 < 1.5
  CHECK(greedy.next({-1.0f, -1.5f}, {0}) == 1);   // -1 · 2 = -2 < -1.5
  CHECK(greedy.next({-1.0f, -1.5f}, {1}) == 0);   // -3 < -1
  // In probabilities: softmax of the penalised logits.
  Sampler sampler(with(1.0, 0, 1.0, 2.0), 1);
  const std::vector<double> d = sampler.distribution({2.0f, -1.0f, 0.5f}, {0, 1});
  const std::vector<double> want = softmax({1.0f, -2.0f, 0.5f}, 1.0);
  for (size_t i = 0; i < 3; ++i) CHECK(std::abs(d[i] - want[i]) < 1e-12);
  CHECK(contains(error_message([&] { sampler.next({1.0f, 2.0f}, {2}); }), "context token 2 is outside"));
}

TEST_CASE("sampling: bad parameters and logits are named", "[apps][sampling]") {
  // Each real-valued option outside its range (NaN and the infinities included) is named with the range.
  auto refused = [](const SamplingOptions& options, const std::string& part) {
    const std::string message = error_message([&] { Sampler(options, 1); });
    INFO(message);
    CHECK(contains(message, part));
  };
  refused(with(-0.1, 0, 1.0), "temperature must be in [0, inf), got -0.1");
  refused(with(NAN, 0, 1.0), "temperature must be in [0, inf), got nan");
  refused(with(INFINITY, 0, 1.0), "temperature must be in [0, inf), got inf");
  refused(with(1.0, -3, 1.0), "top_k must be >= 0");
  refused(with(1.0, 0, 0.0), "top_p (1 = off) must be in (0, 1], got 0");
  refused(with(1.0, 0, 1.5), "top_p (1 = off) must be in (0, 1], got 1.5");
  refused(with(1.0, 0, NAN), "top_p (1 = off) must be in (0, 1], got nan");
  refused(with(1.0, 0, 1.0, 0.0), "repetition_penalty (1 = off) must be in (0, inf), got 0");
  refused(with(1.0, 0, 1.0, -1.0), "repetition_penalty (1 = off) must be in (0, inf), got -1");
  refused(with(1.0, 0, 1.0, INFINITY), "repetition_penalty (1 = off) must be in (0, inf), got inf");
  Sampler sampler(with(1.0, 0, 1.0), 1);
  CHECK(contains(error_message([&] { sampler.next({}, {}); }), "empty logits"));
  CHECK(contains(error_message([&] { sampler.next({1.0f, NAN}, {}); }), "logit 1 is nan"));
  CHECK(contains(error_message([&] { sampler.next({-INFINITY, -INFINITY}, {}); }), "every logit is -inf"));
}

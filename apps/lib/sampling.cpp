// Next-token selection (see sampling.h for the steps and their order).
#include "apps/lib/sampling.h"

#include <algorithm>
#include <functional>
#include <cmath>

#include "base/error.h"
#include "base/philox.h"

namespace mgl::apps {

namespace {

// Uniform in [0, 1) with 53 random bits: two words of the Philox block of the stream (seed, offset).
double uniform53(const Generator& stream) {
  const philox::Uint4 block = philox::block(stream.seed, stream.offset, 0);
  const uint64_t bits = (static_cast<uint64_t>(block.x >> 5) << 26) | (block.y >> 6);  // 27 + 26 bits
  return static_cast<double>(bits) * 0x1.0p-53;
}

size_t arg_max(const std::vector<double>& values) {
  return static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin());  // first maximum
}

}  // namespace

void SamplingOptions::validate() const {
  check_in_range(kTemperatureRange, "sampling: temperature", temperature);
  MGL_CHECK(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
  check_in_range(kTopPRange, "sampling: top_p (1 = off)", top_p);
  check_in_range(kRepetitionPenaltyRange, "sampling: repetition_penalty (1 = off)", repetition_penalty);
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : options_(options), generator_(seed) {
  options_.validate();
}

std::vector<double> Sampler::distribution(const std::vector<float>& logits,
                                          const std::unordered_set<int32_t>& context) const {
  return probabilities(logits, context);
}

// Into the sampler's own buffers: a vocabulary's worth of doubles allocated anew per token costs more
// in page faults than the arithmetic.
const std::vector<double>& Sampler::probabilities(const std::vector<float>& logits,
                                                  const std::unordered_set<int32_t>& context) const {
  MGL_CHECK(!logits.empty(), "sampling: empty logits");
  const size_t V = logits.size();
  for (size_t i = 0; i < V; ++i)
    MGL_CHECK(!std::isnan(logits[i]) && logits[i] != INFINITY, "sampling: logit ", i, " is ", logits[i]);
  std::vector<double>& scores = scratch_.scores;
  scores.assign(logits.begin(), logits.end());
  if (options_.repetition_penalty != 1.0) {
    for (int32_t id : context) {
      MGL_CHECK(id >= 0 && static_cast<size_t>(id) < V, "sampling: context token ", id, " is outside the vocabulary [0, ",
                V, ")");
      double& s = scores[static_cast<size_t>(id)];
      s = s > 0 ? s / options_.repetition_penalty : s * options_.repetition_penalty;
    }
  }
  std::vector<double>& p = scratch_.p;
  p.assign(V, 0.0);
  if (options_.is_greedy()) {
    p[arg_max(scores)] = 1.0;
    return p;
  }
  // Softmax of scores / T, shifted by the maximum for stability.
  const double top = scores[arg_max(scores)];
  MGL_CHECK(std::isfinite(top), "sampling: every logit is -inf");
  double total = 0;
  for (size_t i = 0; i < V; ++i) total += p[i] = std::exp((scores[i] - top) / options_.temperature);
  for (double& x : p) x /= total;

  // Neither filter sorts the vocabulary: top-k needs only the k-th largest probability (a selection),
  // top-p only the most likely tokens up to mass p, taken from a heap one by one. "Descending order"
  // is that of a stable sort by probability: equal probabilities by increasing id.
  std::vector<char>& keep = scratch_.keep;
  keep.assign(V, 1);
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < V) {
    std::vector<double>& sorted = scratch_.scores;  // the scores are no longer needed
    sorted.assign(p.begin(), p.end());
    const auto kth = sorted.begin() + (options_.top_k - 1);
    std::nth_element(sorted.begin(), kth, sorted.end(), std::greater<>());
    for (size_t i = 0; i < V; ++i) keep[i] = p[i] >= *kth;
  }
  if (options_.top_p < 1.0) {
    // Kept while the mass before it, over the tokens top-k kept (renormalised), is below p.
    double kept_mass = 0;
    std::vector<size_t>& heap = scratch_.heap;
    heap.clear();
    for (size_t i = 0; i < V; ++i)
      if (keep[i]) kept_mass += p[i], heap.push_back(i);
    const auto after = [&](size_t a, size_t b) { return p[a] < p[b] || (p[a] == p[b] && a > b); };
    std::make_heap(heap.begin(), heap.end(), after);
    std::fill(keep.begin(), keep.end(), 0);
    for (double before = 0; !heap.empty() && before < options_.top_p;) {
      std::pop_heap(heap.begin(), heap.end(), after);
      const size_t i = heap.back();
      heap.pop_back();
      keep[i] = 1;
      before += p[i] / kept_mass;
    }
  }
  double kept = 0;
  for (size_t i = 0; i < V; ++i) kept += keep[i] ? p[i] : 0.0;
  for (size_t i = 0; i < V; ++i) p[i] = keep[i] ? p[i] / kept : 0.0;
  return p;
}

int32_t Sampler::next(const std::vector<float>& logits, const std::unordered_set<int32_t>& context) {
  const std::vector<double>& p = probabilities(logits, context);
  if (options_.is_greedy()) return static_cast<int32_t>(arg_max(p));
  const double u = uniform53(generator_.take());
  double cumulative = 0;
  size_t last_kept = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) continue;
    cumulative += p[i];
    last_kept = i;
    if (u < cumulative) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last_kept);  // u just below 1 and the sum rounded below it
}

}  // namespace mgl::apps

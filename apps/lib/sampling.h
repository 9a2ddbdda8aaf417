#pragma once
// Choosing the next token from a row of logits: greedy, or sampling with temperature, top-k and
// top-p (nucleus), after a repetition penalty. The random draws come from our Philox Generator, so a
// seed reproduces a generation exactly.
//
// The steps, in the order of Hugging Face's generate() (and the official generation.py for the
// middle three):
//   1. repetition penalty ρ (CTRL, Keskar et al. 2019) on every token already in the context:
//      a logit l > 0 becomes l / ρ, a logit l <= 0 becomes l · ρ (ρ > 1 discourages repeats);
//   2. greedy (or temperature 0): the arg max, ties to the lowest id; otherwise p = softmax(l / T);
//   3. top-k: keep the tokens whose probability is at least the k-th largest (ties kept);
//   4. top-p: keep the smallest prefix of the tokens sorted by probability whose mass reaches p
//      (a token is kept when the mass before it is < p; the most likely token always is);
//   5. draw from the kept probabilities, renormalised, by inverting their cumulative sum at a
//      uniform u in [0, 1) (53 random bits of one Philox block).
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "base/value_range.h"
#include "core/random.h"

namespace mgl::apps {

struct SamplingOptions {
  bool greedy = false;              // arg max (also when temperature == 0)
  double temperature = 1.0;         // >= 0
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // in (0, 1]; 1: off
  double repetition_penalty = 1.0;  // > 0; 1: off

  // The ranges validate() holds the real-valued options to (generate's flags are checked against them too).
  static constexpr ValueRange kTemperatureRange = ValueRange::at_least(0);
  static constexpr ValueRange kTopPRange = ValueRange::open_closed(0, 1);
  static constexpr ValueRange kRepetitionPenaltyRange = ValueRange::above(0);

  // Throws mgl::Error naming the bad parameter and its value.
  void validate() const;
  bool is_greedy() const { return greedy || temperature == 0.0; }
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, uint64_t seed);  // validates the options

  // The next token for one row of logits; `context` holds the ids the repetition penalty applies to
  // (the prompt and what was generated). Consumes one Philox draw unless greedy.
  int32_t next(const std::vector<float>& logits, const std::unordered_set<int32_t>& context);

  // The probabilities next() draws from, after steps 1-4 (zeros outside the kept set; all mass on
  // the arg max when greedy). Exposed for tests and diagnostics.
  std::vector<double> distribution(const std::vector<float>& logits, const std::unordered_set<int32_t>& context) const;

  const SamplingOptions& options() const { return options_; }

 private:
  // distribution() in buffers reused from token to token (valid until the next call).
  const std::vector<double>& probabilities(const std::vector<float>& logits,
                                           const std::unordered_set<int32_t>& context) const;

  SamplingOptions options_;
  Generator generator_;
  struct Scratch {
    std::vector<double> scores, p;
    std::vector<char> keep;
    std::vector<size_t> heap;
  };
  mutable Scratch scratch_;
};

}  // namespace mgl::apps

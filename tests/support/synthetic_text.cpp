#include "support/synthetic_text.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace mgl::testing {

namespace {

constexpr uint64_t kWords = 307;      // V, prime
constexpr uint64_t kSuccessors = 4;   // k
constexpr uint64_t kSentenceEnd = 8;  // a sentence ends after a word with probability q = 1/8
constexpr uint64_t kNewLine = 4;      // a sentence end starts a new line with probability r = 1/4
constexpr uint64_t kVocabularySeed = 20261128;
constexpr uint64_t kTextSeed = 1;

// splitmix64 (Steele, Lea and Flood, 2014): integer arithmetic only, so the same draws on every machine,
// which std::uniform_int_distribution (implementation-defined) does not promise.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform on [0, n): draws below 2^64 mod n are rejected, leaving every residue equally many draws.
  uint64_t below(uint64_t n) {
    const uint64_t rejected = (0 - n) % n;  // 2^64 mod n
    for (;;)
      if (const uint64_t x = next(); x >= rejected) return x % n;
  }

  template <size_t N>
  const char* pick(const std::array<const char*, N>& items) {
    return items[below(N)];
  }

 private:
  uint64_t state_;
};

struct Language {
  std::vector<std::string> words;             // V distinct lower-case words
  std::array<uint64_t, kSuccessors> offsets;  // distinct, in [1, V)
};

const Language& language() {
  static const Language built = [] {
    constexpr std::array<const char*, 28> onsets = {"", "", "b", "c", "d", "f", "g", "h", "l", "m",
                                                    "n", "p", "r", "s", "t", "v", "w", "bl", "br", "ch",
                                                    "cr", "dr", "fr", "gr", "pl", "sh", "st", "th"};
    constexpr std::array<const char*, 10> vowels = {"a", "e", "i", "o", "u", "ai", "ea", "ee", "ou", "oo"};
    constexpr std::array<const char*, 12> codas = {"", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"};
    constexpr std::array<uint64_t, 6> syllable_counts = {1, 1, 1, 2, 2, 3};  // English-like word lengths
    SplitMix64 rng(kVocabularySeed);
    Language l;
    std::set<std::string> seen;
    while (l.words.size() < kWords) {
      std::string word;
      for (uint64_t s = 0, n = syllable_counts[rng.below(6)]; s < n; ++s) {
        word += rng.pick(onsets);  // one draw a statement: the order of a call's arguments is unspecified
        word += rng.pick(vowels);
        word += rng.pick(codas);
      }
      if (seen.insert(word).second) l.words.push_back(word);
    }
    for (size_t j = 0; j < kSuccessors;) {
      const uint64_t offset = 1 + rng.below(kWords - 1);
      if (std::find(l.offsets.begin(), l.offsets.begin() + j, offset) == l.offsets.begin() + j) l.offsets[j++] = offset;
    }
    return l;
  }();
  return built;
}

}  // namespace

std::string synthetic_text(size_t bytes) {
  const Language& l = language();
  SplitMix64 rng(kTextSeed);
  std::string text;
  text.reserve(bytes + 64);
  uint64_t word = 0;
  bool sentence_start = true;
  while (text.size() < bytes) {
    std::string spelled = l.words[word];
    if (sentence_start) spelled[0] = static_cast<char>(spelled[0] - 'a' + 'A');
    text += spelled;
    sentence_start = rng.below(kSentenceEnd) == 0;
    if (sentence_start) text += '.';
    text += sentence_start && rng.below(kNewLine) == 0 ? '\n' : ' ';
    word = (word + l.offsets[rng.below(kSuccessors)]) % kWords;
  }
  text.resize(bytes);
  return text;
}

double synthetic_text_entropy_rate() {
  const auto h = [](double p) { return -p * std::log(p) - (1 - p) * std::log(1 - p); };
  const double q = 1.0 / kSentenceEnd, r = 1.0 / kNewLine;
  const double per_word = std::log(static_cast<double>(kSuccessors)) + h(q) + q * h(r);
  double length = 0;
  for (const std::string& word : language().words) length += static_cast<double>(word.size());
  length /= kWords;
  return per_word / (length + 1 + q);
}

}  // namespace mgl::testing

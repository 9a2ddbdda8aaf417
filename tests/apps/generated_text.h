#pragma once
// Shared by the SentencePiece tests (tests/apps/test_tokenizer.cpp, test_token_source.cpp,
// test_scoring.cpp): text to train a tokenizer on and to tokenize.
#include <cstdint>
#include <string>
#include <vector>

#include "base/philox.h"

namespace mgl::testing {

// Sentences of words drawn from a small lexicon by a Philox stream: enough repetition for a subword
// vocabulary to form, with punctuation, digits and a few non-ASCII words.
inline std::string generated_text(uint64_t seed, int lines) {
  const std::vector<std::string> words = {"the",   "model",  "reads", "tokens", "and",     "predicts", "next",
                                          "word",  "from",   "long",  "context", "moving", "average",  "gated",
                                          "chunk", "attention", "café", "naïve",  "über",    "2024",    "megalodon"};
  std::string text;
  uint64_t index = 0;
  for (int line = 0; line < lines; ++line) {
    const int length = 4 + static_cast<int>(philox::block(seed, 0, index++).x % 10);
    for (int w = 0; w < length; ++w) {
      if (w > 0) text += ' ';
      text += words[philox::block(seed, 0, index++).x % words.size()];
    }
    text += line % 3 == 0 ? ".\n" : ",\n";
  }
  return text;
}

}  // namespace mgl::testing

#pragma once
// A generated English-like text whose entropy rate is known by construction: the trainer tests' corpus,
// the same bytes on every machine, with nothing to install.
//
// The source. A vocabulary of V = 307 distinct pseudo-words of one to three syllables (onset, vowel, coda),
// drawn once from a fixed seed with splitmix64, which gives the same numbers on every machine. The words
// follow a first-order Markov chain: word i is followed by word i + o_j (mod V) for one of k = 4 distinct
// offsets o_j, each with probability 1/k. After each word the sentence ends with probability q = 1/8 (a
// '.', and the next word is capitalised), and a sentence end starts a new line with probability r = 1/4;
// every other word is followed by a space. The punctuation draws are independent of the words. Every
// word has exactly k predecessors as well as k successors, so the transition matrix is doubly stochastic
// and the uniform distribution is stationary; V is prime, so a single offset already walks through every
// word: the chain is irreducible, and long-run averages over the text are averages over the uniform
// vocabulary.
//
// Entropy rate. The bytes give back the word choices and punctuation draws (the words are distinct and
// hold no space, '.' or capital), so n words' bytes carry exactly the entropy of n words' draws:
//   H_word = ln k + H(q) + q H(r) = 1.3863 + 0.3768 + 0.0703 = 1.8334 nats,  H(p) = -p ln p - (1-p) ln(1-p).
// A word takes on average L + 1 + q bytes: its letters (the vocabulary's mean length L = 2002/307 = 6.521),
// the space or newline after it and, at a sentence end, the '.'. The entropy rate is
//   H_word / (L + 1 + q) = 1.8334 / 7.6462 = 0.2398 nats per byte,
// a floor under any model's loss on unseen text of this source. Byte frequencies alone (the byte-unigram
// entropy of the text, counted over its first 10^8 bytes) cost 2.96 nats per byte.
#include <cstddef>
#include <string>

namespace mgl::testing {

// The first `bytes` of the text.
std::string synthetic_text(size_t bytes);

// The text's entropy rate in nats per byte, H_word / (L + 1 + q) above, computed from the vocabulary.
double synthetic_text_entropy_rate();

}  // namespace mgl::testing

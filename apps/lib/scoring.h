#pragma once
// Scoring a token stream of any length with a MEGALODON model in constant memory: the stream is read
// from a TokenSource a block at a time (a text file is tokenized as it is read, apps/lib/token_source.h)
// and goes through a StreamingSession (nn/streaming.h) two chunks at a time, so a 1M-token document
// costs the memory of two chunks and a block. Token t + 1 is predicted from tokens [0, t]; the first
// token is context only.
//
// Results: the total negative log-likelihood (nats) and the number of predicted tokens, the mean,
// perplexity exp(mean), bits per token, bits per byte (given the byte count of the text), and the
// loss-vs-position curve: the mean NLL of the predicted tokens in position buckets, either powers of
// two ([1, 2), [2, 4), [4, 8), ...: how the loss falls as the context grows) or fixed-width buckets
// ([0, w), [w, 2w), ...). A position is the index of the predicted token in the stream.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "apps/lib/token_source.h"
#include "nn/streaming.h"

namespace mgl::apps {

struct ScoringOptions {
  // The TimestepNorm mode and window; by default the model config's (nn::StreamingOptions::from_config).
  std::optional<nn::StreamingOptions> streaming;
  std::string buckets = "log2";  // "log2" or "linear"
  int64_t bucket_width = 1024;   // positions per bucket for "linear"
  int64_t byte_count = 0;        // bytes of the text the predicted tokens encode; 0: no bits per byte
  // Called after each piece with (the stream position scored up to: the tokens predicted so far in one
  // process; the tokens to predict when the source knows its length before it is read, else 0).
  std::function<void(int64_t done, int64_t total)> progress;
};

struct PositionBucket {
  int64_t begin = 0, end = 0;  // positions [begin, end)
  int64_t tokens = 0;          // predicted tokens in it (fewer than end - begin for the last one)
  double nll = 0;              // their total NLL in nats
  double mean_nll() const { return tokens > 0 ? nll / static_cast<double>(tokens) : 0.0; }
};

struct ScoringResult {
  int64_t tokens = 0;           // predicted tokens (stream length - 1)
  double total_nll = 0;         // nats
  double mean_nll = 0;          // nats per token
  double perplexity = 0;        // exp(mean_nll)
  double bits_per_token = 0;
  std::optional<double> bits_per_byte;  // when ScoringOptions::byte_count > 0
  std::vector<PositionBucket> curve;    // the buckets up to the last position, in order
};

// Scores the stream of `source` (at least two ids in [0, vocab)) with `model` (in evaluation mode),
// reading it as the pieces need it. Throws mgl::Error naming a bad option or an id outside the
// vocabulary (with its position).
ScoringResult score_stream(const nn::Megalodon& model, TokenSource& source, const ScoringOptions& options = {});
// score_stream of ids in memory.
ScoringResult score_tokens(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                           const ScoringOptions& options = {});

// The pieces score_stream is made of, shared with the chunk-parallel scoring (parallel_scoring.h):
// the checks of the options and of the stream's first two ids (read into `tokens`); the scores of one
// model call's logits [1, n, vocab] for stream positions [first, first + n), whose `targets` are the
// ids of positions [first + 1, first + n + 1), added to result.total_nll and result.curve; and the
// summary statistics from result.tokens and result.total_nll.
void check_scoring_inputs(const ScoringOptions& options, TokenWindow& tokens);
void add_call_scores(std::span<const int32_t> targets, int64_t first, const Tensor& logits,
                     const ScoringOptions& options, ScoringResult& result);
void finish_scoring(ScoringResult& result, const ScoringOptions& options);

// The result as JSON (every field and the curve), and the curve as a TSV table with a header
// (begin, end, tokens, mean_nll, perplexity).
std::string scoring_json(const ScoringResult& result);
std::string scoring_curve_tsv(const ScoringResult& result);
// Writes the curve to `path` atomically (apps/lib/files.h): JSON (scoring_json) when the name ends in ".json",
// else TSV.
void write_scoring_curve(const ScoringResult& result, const std::string& path);

}  // namespace mgl::apps

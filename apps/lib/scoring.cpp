// Streaming evaluation of a token stream (see scoring.h).
#include "apps/lib/scoring.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/lib/files.h"
#include "autograd/grad_mode.h"
#include "base/error.h"
#include "ops/ops.h"

namespace mgl::apps {

namespace {

// The bucket [begin, end) that holds `position` (>= 1).
std::pair<int64_t, int64_t> bucket_of(int64_t position, const ScoringOptions& options) {
  if (options.buckets == "linear") {
    const int64_t begin = position / options.bucket_width * options.bucket_width;
    return {begin, begin + options.bucket_width};
  }
  int64_t begin = 1;
  while (begin <= position / 2) begin *= 2;  // the largest power of two <= position
  return {begin, 2 * begin};
}

// Adds `nll` of `count` predicted tokens starting at `position` (all in one bucket) to the curve.
void add_to_curve(std::vector<PositionBucket>& curve, int64_t position, int64_t count, double nll,
                  const ScoringOptions& options) {
  const auto [begin, end] = bucket_of(position, options);
  if (curve.empty() || curve.back().begin != begin) curve.push_back({begin, end, 0, 0.0});
  curve.back().tokens += count;
  curve.back().nll += nll;
}

}  // namespace

void check_scoring_inputs(const ScoringOptions& options, TokenWindow& tokens) {
  MGL_CHECK(options.buckets == "log2" || options.buckets == "linear",
            "scoring: buckets must be \"log2\" or \"linear\", got \"", options.buckets, "\"");
  MGL_CHECK(options.buckets != "linear" || options.bucket_width >= 1, "scoring: bucket_width must be >= 1, got ",
            options.bucket_width);
  MGL_CHECK(options.byte_count >= 0, "scoring: byte_count must be >= 0, got ", options.byte_count);
  tokens.read_to(2, 0);
  MGL_CHECK(tokens.end() >= 2, "scoring: need at least 2 tokens (one of context, one to predict), got ",
            tokens.end());
}

// The logits of stream position i predict token i + 1: each call's rows are scored bucket by bucket
// with the training loss (the mean cross-entropy of a row range, times its length).
void add_call_scores(std::span<const int32_t> targets, int64_t first, const Tensor& logits,
                     const ScoringOptions& options, ScoringResult& result) {
  const int64_t n = logits.size(1);
  MGL_CHECK(static_cast<int64_t>(targets.size()) == n, "scoring: ", targets.size(), " targets for ", n, " rows");
  const Tensor rows = reshape(logits, {n, logits.size(2)});
  for (int64_t r = 0; r < n;) {
    const int64_t position = first + 1 + r;
    const int64_t count = std::min(n - r, bucket_of(position, options).second - position);
    const std::span<const int32_t> some = targets.subspan(static_cast<size_t>(r), static_cast<size_t>(count));
    const Tensor target =
        Tensor::from_vector(std::vector<int32_t>(some.begin(), some.end()), {count}, DType::i64, logits.device());
    const double nll = cross_entropy(slice(rows, 0, r, r + count), target).item() * static_cast<double>(count);
    result.total_nll += nll;
    add_to_curve(result.curve, position, count, nll, options);
    r += count;
  }
}

void finish_scoring(ScoringResult& result, const ScoringOptions& options) {
  result.mean_nll = result.total_nll / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.mean_nll);
  result.bits_per_token = result.mean_nll / std::log(2.0);
  if (options.byte_count > 0) result.bits_per_byte = result.total_nll / std::log(2.0) / double(options.byte_count);
}

ScoringResult score_stream(const nn::Megalodon& model, TokenSource& source, const ScoringOptions& options) {
  TokenWindow tokens(source, model.config().vocab_size);
  check_scoring_inputs(options, tokens);
  nn::StreamingSession session(model, 1, options.streaming.value_or(nn::StreamingOptions::from_config(model.config())));
  ScoringResult result;
  const nn::LogitsObserver score = [&](int64_t first, const Tensor& logits) {
    add_call_scores(tokens.ids(first + 1, first + 1 + logits.size(1)), first, logits, options, result);
  };
  const int64_t total = source.size() ? *source.size() - 1 : 0;
  // Two chunks per piece, so that every prefill is one call of whole chunks (the official batching).
  // A piece goes once the id after it, its last target, has been read; the ids before it are dropped.
  NoGradGuard no_grad;
  const int64_t piece = nn::StreamingSession::kChunksPerCall * model.config().chunk_size;
  for (int64_t start = 0;; start += piece) {
    tokens.read_to(start + piece + 1, start);
    const int64_t end = std::min(start + piece, tokens.end() - 1);
    if (end <= start) break;  // the stream has ended
    session.prefill(tokens.tensor(start, end), score);
    if (options.progress) options.progress(end, total);
  }
  result.tokens = tokens.end() - 1;
  finish_scoring(result, options);
  return result;
}

ScoringResult score_tokens(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                           const ScoringOptions& options) {
  TokenVector source(tokens);
  return score_stream(model, source, options);
}

std::string scoring_json(const ScoringResult& result) {
  nlohmann::ordered_json curve = nlohmann::ordered_json::array();
  for (const PositionBucket& b : result.curve)
    curve.push_back({{"begin", b.begin}, {"end", b.end}, {"tokens", b.tokens}, {"mean_nll", b.mean_nll()}});
  const nlohmann::ordered_json json = {
      {"tokens", result.tokens},
      {"total_nll", result.total_nll},
      {"mean_nll", result.mean_nll},
      {"perplexity", result.perplexity},
      {"bits_per_token", result.bits_per_token},
      {"bits_per_byte", result.bits_per_byte ? nlohmann::ordered_json(*result.bits_per_byte) : nullptr},
      {"curve", curve},
  };
  return json.dump(2) + "\n";
}

std::string scoring_curve_tsv(const ScoringResult& result) {
  std::ostringstream out;
  out << "begin\tend\ttokens\tmean_nll\tperplexity\n" << std::setprecision(8);
  for (const PositionBucket& b : result.curve)
    out << b.begin << '\t' << b.end << '\t' << b.tokens << '\t' << b.mean_nll() << '\t' << std::exp(b.mean_nll())
        << '\n';
  return out.str();
}

void write_scoring_curve(const ScoringResult& result, const std::string& path) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  try {
    write_file_atomically(path, json ? scoring_json(result) : scoring_curve_tsv(result));
  } catch (const Error& e) {
    MGL_FAIL("scoring: cannot write the curve: ", e.what());
  }
}

}  // namespace mgl::apps

// Scoring a token stream (apps/lib/scoring.h): in the exact TimestepNorm mode the total NLL equals
// the cross-entropy of one full forward (f64), every bucket of the loss-vs-position curve equals the
// cross-entropy of the full forward over its positions (powers of two and fixed width), the derived
// numbers (perplexity, bits per token and per byte) follow, the windowed mode is used when asked, a
// text file read and tokenized in small blocks scores bitwise as its whole token vector (byte
// tokenizer and SentencePiece), the curve files are written, and bad inputs are named.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "apps/generated_text.h"
#include "apps/lib/scoring.h"
#include "apps/lib/tokenizer.h"
#include "nn/megalodon_models.h"
#include "nn/streaming_runs.h"
#include "ops/ops.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

// Mean cross-entropy of the full forward's predictions of tokens [begin, end).
double full_forward_nll(const nn::Megalodon& model, const std::vector<int32_t>& tokens, int64_t begin, int64_t end) {
  NoGradGuard no_grad;
  const auto n = static_cast<int64_t>(tokens.size());
  const Tensor ids = Tensor::from_vector(tokens, {1, n}, DType::i64);
  const Tensor logits = model.forward(slice(ids, 1, 0, n - 1));
  return nn::Megalodon::loss(contiguous(slice(logits, 1, begin - 1, end - 1)), contiguous(slice(ids, 1, begin, end)))
      .item();
}

std::vector<int32_t> random_stream(int64_t n, int64_t vocab, uint64_t seed) {
  return random_ids({n}, vocab, seed, DType::i32).to_vector<int32_t>();
}

}  // namespace

TEST_CASE("scoring: equals the cross-entropy of the full forward, overall and per bucket (exact, f64)",
          "[apps][scoring]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto model = f64_model(nn::MegalodonConfig::preset("test"), seed);  // chunk 8
  model->eval();
  const int64_t N = 5 * 8 + 4;  // pieces of 16: two whole, then 11 tokens (a chunk and a partial one)
  const std::vector<int32_t> tokens = random_stream(N, model->config().vocab_size, seed + 1);
  ScoringOptions options;
  options.streaming = exact();
  options.byte_count = 100;
  std::vector<int64_t> progress;
  options.progress = [&](int64_t done, int64_t total) {
    CHECK(total == N - 1);
    progress.push_back(done);
  };
  const ScoringResult result = score_tokens(*model, tokens, options);
  CHECK(progress == std::vector<int64_t>{16, 32, 43});
  CHECK(result.tokens == N - 1);
  const double want = full_forward_nll(*model, tokens, 1, N);
  CHECK(std::abs(result.mean_nll - want) < 1e-12);
  CHECK(std::abs(result.total_nll - want * double(N - 1)) < 1e-10);
  CHECK(std::abs(result.perplexity - std::exp(want)) < 1e-10);
  CHECK(std::abs(result.bits_per_token - want / std::log(2.0)) < 1e-12);
  REQUIRE(result.bits_per_byte.has_value());
  CHECK(std::abs(*result.bits_per_byte - want * double(N - 1) / std::log(2.0) / 100.0) < 1e-12);

  // Powers of two: [1, 2), [2, 4), ..., [32, 64) holding positions up to 43.
  REQUIRE(result.curve.size() == 6);
  int64_t counted = 0;
  for (size_t b = 0; b < result.curve.size(); ++b) {
    const PositionBucket& bucket = result.curve[b];
    INFO("bucket [" << bucket.begin << ", " << bucket.end << ")");
    CHECK(bucket.begin == int64_t{1} << b);
    CHECK(bucket.end == int64_t{2} << b);
    CHECK(bucket.tokens == std::min(bucket.end, N) - bucket.begin);
    CHECK(std::abs(bucket.mean_nll() - full_forward_nll(*model, tokens, bucket.begin, std::min(bucket.end, N))) < 1e-12);
    counted += bucket.tokens;
  }
  CHECK(counted == N - 1);

  // Fixed width 10: [0, 10) (positions 1..9), [10, 20), ..., [40, 50).
  options.buckets = "linear";
  options.bucket_width = 10;
  options.progress = nullptr;
  const ScoringResult linear = score_tokens(*model, tokens, options);
  CHECK(std::abs(linear.total_nll - result.total_nll) < 1e-10);
  REQUIRE(linear.curve.size() == 5);
  CHECK(linear.curve[0].tokens == 9);
  for (const PositionBucket& bucket : linear.curve) {
    INFO("bucket [" << bucket.begin << ", " << bucket.end << ")");
    CHECK(std::abs(bucket.mean_nll() - full_forward_nll(*model, tokens, std::max<int64_t>(bucket.begin, 1),
                                                        std::min(bucket.end, N))) < 1e-12);
  }
}

TEST_CASE("scoring: the windowed mode scores what a windowed session predicts", "[apps][scoring]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto model = f64_model(nn::MegalodonConfig::preset("test"), seed);
  model->eval();
  const int64_t N = 12 * 8 + 1;
  const std::vector<int32_t> tokens = random_stream(N, model->config().vocab_size, seed + 1);
  ScoringOptions options;
  options.streaming = windowed(2, 3);
  const ScoringResult result = score_tokens(*model, tokens, options);

  // The same predictions from a windowed session fed the whole stream at once.
  nn::StreamingSession session(*model, 1, windowed(2, 3));
  std::vector<Tensor> logits;
  session.prefill(Tensor::from_vector(std::vector<int32_t>(tokens.begin(), tokens.end() - 1), {1, N - 1}, DType::i64),
                  [&](int64_t, const Tensor& l) { logits.push_back(l); });
  const Tensor targets = Tensor::from_vector(std::vector<int32_t>(tokens.begin() + 1, tokens.end()), {1, N - 1}, DType::i64);
  const double want = nn::Megalodon::loss(concat(logits, 1), targets).item();
  CHECK(std::abs(result.mean_nll - want) < 1e-12);
  options.streaming = exact();
  CHECK(std::abs(score_tokens(*model, tokens, options).mean_nll - want) > 1e-9);  // the window acts
  CHECK_FALSE(result.bits_per_byte.has_value());
}

TEST_CASE("scoring: a text file read in small blocks scores bitwise as its whole token vector", "[apps][scoring]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto dir = scratch("scoring");
  std::ofstream(dir / "corpus.txt") << generated_text(1, 400);  // fixed: see test_token_source.cpp
  const std::string text = "  the model reads\n\n" + generated_text(3, 40) + "and no newline at the end";
  const std::string file = (dir / "text.txt").string();
  std::ofstream(file) << text;

  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  tokenizers.push_back(std::make_unique<ByteTokenizer>());
  if (sentencepiece_available())
    tokenizers.push_back(
        load_sentencepiece(train_sentencepiece({(dir / "corpus.txt").string()}, (dir / "tok").string(), 400)));
  else
    WARN("SKIPPED for SentencePiece: this build has none");
  for (const auto& tokenizer : tokenizers) {
    nn::MegalodonConfig config = nn::MegalodonConfig::preset("test");  // chunk 8: blocks cut across calls
    config.vocab_size = tokenizer->vocab_size();
    Generator gen(seed);
    nn::InitOptions init;
    init.generator = &gen;
    nn::Megalodon model(config, init);
    model.eval();
    std::vector<int32_t> whole;  // a document: the separator (SentencePiece), then the text
    if (tokenizer->eos_id()) whole.push_back(*tokenizer->eos_id());
    for (int32_t id : tokenizer->encode(text)) whole.push_back(id);
    for (const nn::StreamingOptions& streaming : {exact(), windowed(2, 3)})
      for (int64_t block : {int64_t{5}, int64_t{300}}) {
        INFO(tokenizer->identity() << ", " << streaming.timestep_norm_mode << ", blocks of " << block << " bytes");
        TextFileTokens tokens(file, *tokenizer, block);
        ScoringOptions options;
        options.streaming = streaming;
        options.byte_count = tokens.predicted_bytes();
        const ScoringResult streamed = score_stream(model, tokens, options);
        const ScoringResult at_once = score_tokens(model, whole, options);
        CHECK(streamed.tokens == static_cast<int64_t>(whole.size()) - 1);
        CHECK(streamed.total_nll == at_once.total_nll);
        CHECK(scoring_json(streamed) == scoring_json(at_once));
      }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("scoring: curve files in TSV and JSON", "[apps][scoring]") {
  const uint64_t seed = fresh_seed();
  nn::Megalodon model(nn::MegalodonConfig::preset("test"));
  model.eval();
  const ScoringResult result = score_tokens(model, random_stream(20, 50, seed), {.byte_count = 19});
  const auto dir = scratch("scoring");
  auto read = [](const std::filesystem::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  write_scoring_curve(result, (dir / "curve.tsv").string());
  const std::string tsv = read(dir / "curve.tsv");
  CHECK(tsv.rfind("begin\tend\ttokens\tmean_nll\tperplexity\n1\t2\t1\t", 0) == 0);
  CHECK(std::count(tsv.begin(), tsv.end(), '\n') == 1 + 5);  // header + [1,2) ... [16,32)
  write_scoring_curve(result, (dir / "curve.json").string());
  const auto json = nlohmann::json::parse(read(dir / "curve.json"));
  CHECK(json.at("tokens") == 19);
  CHECK(std::abs(json.at("mean_nll").get<double>() - result.mean_nll) < 1e-12);
  CHECK(std::abs(json.at("bits_per_byte").get<double>() - *result.bits_per_byte) < 1e-12);
  CHECK(json.at("curve").size() == 5);
  CHECK(json.at("curve")[4].at("begin") == 16);
  CHECK(contains(error_message([&] { write_scoring_curve(result, (dir / "no/such/dir.tsv").string()); }),
                 "cannot write the curve"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("scoring: bad inputs are named", "[apps][scoring]") {
  nn::Megalodon model(nn::MegalodonConfig::preset("test"));
  model.eval();
  CHECK(contains(error_message([&] { score_tokens(model, {3}); }), "need at least 2 tokens"));
  CHECK(contains(error_message([&] { score_tokens(model, {3, 4, 50, 1}); }),
                 "token 50 at position 2 is outside the model's vocabulary [0, 50)"));
  CHECK(contains(error_message([&] { score_tokens(model, {1, 2}, {.buckets = "cubic"}); }), "\"cubic\""));
  CHECK(contains(error_message([&] { score_tokens(model, {1, 2}, {.buckets = "linear", .bucket_width = 0}); }),
                 "bucket_width must be >= 1"));
  model.train();
  CHECK(contains(error_message([&] { score_tokens(model, {1, 2}); }), "model.eval()"));
}

// Scoring one text over the ranks (apps/lib/parallel_scoring.h), under mpirun with 2 and 4 ranks,
// against the one-process score_tokens that every rank also computes: both TimestepNorm modes, both
// kinds of buckets, texts that end inside a call and on a boundary. f32 on the CPU: each (block,
// call) is the one-process computation, so only the order of the ranks' sums differs (1e-12 here;
// checked at 1e-6).
#include "apps/lib/parallel_scoring.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "nn/megalodon_models.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

void check_same(const apps::ScoringResult& got, const apps::ScoringResult& want) {
  CHECK(got.tokens == want.tokens);
  CHECK(relative(got.total_nll, want.total_nll) <= 1e-6);
  CHECK(relative(got.perplexity, want.perplexity) <= 1e-6);
  REQUIRE(got.curve.size() == want.curve.size());
  for (size_t k = 0; k < got.curve.size(); ++k) {
    INFO("bucket [" << want.curve[k].begin << ", " << want.curve[k].end << ")");
    CHECK(got.curve[k].begin == want.curve[k].begin);
    CHECK(got.curve[k].end == want.curve[k].end);
    CHECK(got.curve[k].tokens == want.curve[k].tokens);
    CHECK(relative(got.curve[k].nll, want.curve[k].nll) <= 1e-6);
  }
}

}  // namespace

TEST_CASE("the split score equals the one-process score in both TimestepNorm modes") {
  dist::ParallelOptions o;
  o.sizes = {dist::initialize_mpi().size, 1, 1};
  o.timeout_s = 120;
  const auto ps = dist::ParallelState::create(o, "cpu");
  const uint64_t seed = shared_seed(ps->world());
  INFO("seed " << seed);
  nn::MegalodonConfig config = small_config();  // chunk 16: a call is 32 tokens
  config.timestep_norm_mode = "windowed";
  Generator gen(seed);
  nn::InitOptions init;
  init.generator = &gen;
  nn::Megalodon model(config, init);
  perturb(model, seed + 1);
  model.eval();
  const int64_t c = config.chunk_size;
  for (int64_t length : {13 * c + 5, 16 * c + 1, 4 * c + 9}) {  // inside a call, on a boundary, short
    const Tensor ids = random_ids({length}, config.vocab_size, seed + 2 + length, DType::i32);
    const std::vector<int32_t> tokens = ids.to_vector<int32_t>();
    for (const std::string mode : {"exact", "windowed"})
      for (const std::string buckets : {"log2", "linear"}) {
        INFO(length << " tokens, " << mode << " TimestepNorm, " << buckets << " buckets");
        apps::ScoringOptions options;
        nn::StreamingOptions streaming = nn::StreamingOptions::from_config(config);
        streaming.timestep_norm_mode = mode;
        streaming.norm_window_chunks = 2;  // re-estimations inside these short texts
        streaming.norm_window_after_chunks = 3;
        options.streaming = streaming;
        options.buckets = buckets;
        options.bucket_width = 24;
        options.byte_count = 3 * length;
        check_same(apps::score_tokens_parallel(model, tokens, options, ps->world()),
                   apps::score_tokens(model, tokens, options));
      }
  }
}

TEST_CASE("the pieces start on call boundaries and cover the stream") {
  for (int ranks : {1, 2, 3, 4, 7})
    for (int64_t predicted : {int64_t{1}, int64_t{31}, int64_t{64}, int64_t{1000}}) {
      const std::vector<int64_t> b = apps::scoring_pieces(predicted, 16, ranks);
      REQUIRE(b.size() == static_cast<size_t>(ranks + 1));
      CHECK(b.front() == 0);
      CHECK(b.back() == predicted);
      for (int r = 0; r < ranks; ++r) {
        CHECK(b[r] <= b[r + 1]);
        CHECK(b[r] % 32 == 0);
      }
    }
}

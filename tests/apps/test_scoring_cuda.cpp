// Scoring on CUDA (apps/lib/scoring.h): the mean NLL and every bucket of the curve of a model on the
// GPU in f32 equal those of the same model on the CPU in f64 within the f32 tolerance.
#include <cmath>

#include "apps/lib/scoring.h"
#include "nn/megalodon_models.h"
#include "nn/streaming_runs.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("scoring: CUDA f32 matches the f64 CPU reference", "[cuda][apps][scoring]") {
  const nn::MegalodonConfig config = small_config();  // chunk 16
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto reference = reference_model(config, seed);
  const auto gpu_model = copy_model(*reference, Device::cuda(0), DType::f32);
  reference->eval();
  gpu_model->eval();
  const std::vector<int32_t> tokens = random_ids({5 * 16 + 7}, config.vocab_size, seed + 1, DType::i32).to_vector<int32_t>();
  for (const nn::StreamingOptions& streaming : {exact(), windowed(2, 3)}) {
    INFO(streaming.timestep_norm_mode);
    ScoringOptions options;
    options.streaming = streaming;
    const ScoringResult want = score_tokens(*reference, tokens, options);
    const ScoringResult got = score_tokens(*gpu_model, tokens, options);
    CHECK(std::abs(got.mean_nll - want.mean_nll) <= 1e-5 * std::abs(want.mean_nll));
    REQUIRE(got.curve.size() == want.curve.size());
    for (size_t b = 0; b < want.curve.size(); ++b) {
      INFO("bucket " << b);
      CHECK(got.curve[b].tokens == want.curve[b].tokens);
      CHECK(std::abs(got.curve[b].mean_nll() - want.curve[b].mean_nll()) <= 1e-5 * std::abs(want.curve[b].mean_nll()));
    }
  }
}

#pragma once
// Shared by the split-scoring tests under mpirun (CPU and CUDA): a text scored over the ranks of the
// world (apps/lib/parallel_scoring.h) against the one-process score_tokens that every rank also
// computes, in both TimestepNorm modes, both kinds of buckets, texts that end inside a call, on a
// boundary, and before every rank has a part, and parts of an even share (one round), of one call
// and of three calls (many rounds, passing the states from the last rank back to the first).
#include <cmath>

#include "apps/lib/parallel_scoring.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "nn/megalodon_models.h"

namespace mgl::testing {

inline double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

inline void check_same_score(const apps::ScoringResult& got, const apps::ScoringResult& want, double tolerance) {
  CHECK(got.tokens == want.tokens);
  CHECK(relative(got.total_nll, want.total_nll) <= tolerance);
  CHECK(relative(got.perplexity, want.perplexity) <= tolerance);
  REQUIRE(got.curve.size() == want.curve.size());
  for (size_t k = 0; k < got.curve.size(); ++k) {
    INFO("bucket [" << want.curve[k].begin << ", " << want.curve[k].end << ")");
    CHECK(got.curve[k].begin == want.curve[k].begin);
    CHECK(got.curve[k].end == want.curve[k].end);
    CHECK(got.curve[k].tokens == want.curve[k].tokens);
    CHECK(relative(got.curve[k].nll, want.curve[k].nll) <= tolerance);
  }
}

// The checks on `device` ("cpu" or "cuda") in `dtype`.
inline void check_split_scores(const std::string& device, DType dtype, double tolerance) {
  dist::ParallelOptions o;
  o.sizes = {dist::initialize_mpi().size, 1, 1};
  o.timeout_s = 120;
  const auto ps = dist::ParallelState::create(o, device);
  const uint64_t seed = shared_seed(ps->world());
  INFO("seed " << seed << " on " << ps->device().str() << " in " << dtype_name(dtype));
  nn::MegalodonConfig config = small_config();  // chunk 16: a call is 32 tokens
  Generator gen(seed);
  nn::InitOptions init;
  init.generator = &gen;
  nn::Megalodon model(config, init);
  perturb(model, seed + 1);
  model.to(ps->device());
  model.set_compute_dtype(dtype);
  model.eval();
  const int64_t c = config.chunk_size;
  for (int64_t length : {13 * c + 5, 16 * c + 1, 4 * c + 9}) {  // inside a call, on a boundary, short
    const std::vector<int32_t> tokens =
        random_ids({length}, config.vocab_size, seed + 2 + length, DType::i32).to_vector<int32_t>();
    for (const std::string mode : {"exact", "windowed"})
      for (const std::string buckets : {"log2", "linear"}) {
        INFO(length << " tokens, " << mode << " TimestepNorm, " << buckets << " buckets");
        apps::ScoringOptions options;
        nn::StreamingOptions streaming = nn::StreamingOptions::from_config(config);
        streaming.timestep_norm_mode = mode;
        streaming.norm_window_chunks = 2;  // re-estimations inside these short texts
        streaming.norm_window_after_chunks = 3;
        streaming.cuda_decoder = false;
        options.streaming = streaming;
        options.buckets = buckets;
        options.bucket_width = 24;
        options.byte_count = 3 * length;
        const apps::ScoringResult want = apps::score_tokens(model, tokens, options);
        for (int64_t part : {int64_t{0}, 2 * c, 6 * c}) {  // 0: an even share
          INFO("parts of " << part << " tokens");
          check_same_score(apps::score_tokens_parallel(model, tokens, options, ps->world(), part), want, tolerance);
        }
      }
  }
}

}  // namespace mgl::testing

// Streaming inference (nn/streaming.h): in the exact TimestepNorm mode, prefill across several chunk
// boundaries and token-by-token decoding across several more give the logits of one training-mode
// forward over the whole sequence (f64 and f32); the windowed mode equals the official schedule
// written out by hand; the state does not grow with the context; bad inputs are named.
#include <vector>

#include "autograd/grad_mode.h"
#include "nn/megalodon_models.h"
#include "nn/streaming.h"
#include "nn/streaming_runs.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;
using nn::StreamingOptions;
using nn::StreamingSession;

namespace {

// The perturbed f64 "test" model (chunk 8) in evaluation mode.
std::unique_ptr<nn::Megalodon> test_model(uint64_t seed) {
  auto model = f64_model(MegalodonConfig::preset("test"), seed);
  model->eval();
  return model;
}

}  // namespace

TEST_CASE("streaming: prefill and decode across chunk boundaries equal the whole forward (exact, f64)",
          "[nn][streaming]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto owner = test_model(seed);
  nn::Megalodon& model = *owner;
  const MegalodonConfig& config = model.config();  // chunk 8
  const Tensor ids = random_ids({2, 61}, config.vocab_size, seed + 2);
  Tensor whole;
  {
    NoGradGuard no_grad;
    whole = model.forward(ids);
  }
  // A prompt of 37 tokens (four chunks and a partial one), then 24 decoded tokens: three more boundaries.
  StreamingSession one_prompt(model, 2, exact());
  CHECK(relative_error(stream(one_prompt, ids, {37}), whole) < 1e-12);
  // Prefills that start inside a chunk, end inside one, and follow decoding; i32 ids.
  StreamingSession pieces(model, 2, exact());
  const Tensor ids32 = Tensor::from_vector(ids.to_vector<int32_t>(), ids.shape());
  CHECK(relative_error(stream(pieces, ids32, {3, 5, 29, 30, 50}), whole) < 1e-12);
  CHECK(pieces.position() == 61);
  CHECK(pieces.state().layers[0].cached_tokens() == 61 % 8);
}

TEST_CASE("streaming: equals the whole forward in f32", "[nn][streaming]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");
  const auto reference = reference_model(config, seed);
  const auto model = copy_model(*reference, Device::cpu(), DType::f32);
  model->eval();
  const Tensor ids = random_ids({1, 45}, config.vocab_size, seed + 2);
  NoGradGuard no_grad;
  const Tensor whole = model->forward(ids);
  StreamingSession session(*model, 1, exact());
  CHECK(relative_error(stream(session, ids, {19}), whole) < 1e-5);
}

TEST_CASE("streaming: the windowed mode re-estimates the norm states on the official schedule", "[nn][streaming]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto owner = test_model(seed);
  nn::Megalodon& model = *owner;
  const MegalodonConfig& config = model.config();  // chunk 8
  const int64_t c = config.chunk_size, window = 2, after = 3, L = 9 * c + 5;
  const Tensor ids = random_ids({2, L}, config.vocab_size, seed + 2);

  // By hand: whole chunks two per call from the start; after every call ending at e >= after * c,
  // the norm states are re-estimated from tokens [e - window * c, e); the tail in one call.
  std::vector<Tensor> expected;
  {
    NoGradGuard no_grad;
    nn::ModelState state;
    for (int64_t s = 0; s < L;) {
      const int64_t e = L - s >= c ? std::min(s + 2 * c, L / c * c) : L;
      nn::ModelState next;
      expected.push_back(model.forward(slice(ids, 1, s, e), &state, &next));
      state = next;
      if (e % c == 0 && e >= after * c) model.reestimate_norm_states(slice(ids, 1, e - window * c, e), state);
      s = e;
    }
  }
  const Tensor reference = concat(expected, 1);

  StreamingSession session(model, 2, windowed(window, after));
  std::vector<Tensor> observed;
  session.prefill(ids, [&](int64_t, const Tensor& logits) { observed.push_back(logits); });
  REQUIRE(observed.size() == expected.size());  // the same calls
  CHECK(relative_error(concat(observed, 1), reference) < 1e-12);

  // The windowed mode differs from the exact one after the first re-estimation (at 4 chunks), not before.
  StreamingSession exact_session(model, 2, exact());
  std::vector<Tensor> exact_logits;
  exact_session.prefill(ids, [&](int64_t, const Tensor& logits) { exact_logits.push_back(logits); });
  const Tensor all_exact = concat(exact_logits, 1);
  CHECK(relative_error(slice(reference, 1, 0, 4 * c), slice(all_exact, 1, 0, 4 * c)) < 1e-12);
  CHECK(relative_error(slice(reference, 1, 4 * c, L), slice(all_exact, 1, 4 * c, L)) > 1e-6);

  // Decoding continues from the re-estimated state without re-estimating (generation.py).
  nn::ModelState state = session.state();
  const Tensor token = random_ids({2}, config.vocab_size, seed + 3);
  nn::ModelState next;
  Tensor want;
  {
    NoGradGuard no_grad;
    want = model.forward(reshape(token, {2, 1}), &state, &next);
  }
  CHECK(relative_error(session.decode(token), reshape(want, {2, config.vocab_size})) < 1e-12);
  // The config's mode is the default.
  CHECK(StreamingSession(model, 1).options().timestep_norm_mode == config.timestep_norm_mode);
}

TEST_CASE("streaming: the state does not grow with the context", "[nn][streaming]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");
  nn::Megalodon model(config);
  model.eval();
  const int64_t c = config.chunk_size;
  for (const StreamingOptions& options : {exact(), windowed(2, 3)}) {
    INFO(options.timestep_norm_mode);
    // 3 chunks + 5 tokens, then 10 times as many chunks: the same phase within a chunk.
    StreamingSession session(model, 2, options);
    session.prefill(random_ids({2, 3 * c + 5}, config.vocab_size, seed + 1));
    const int64_t small = session.state_bytes();
    session.prefill(random_ids({2, 27 * c}, config.vocab_size, seed + 2));
    CHECK(session.position() == 30 * c + 5);
    CHECK(session.state_bytes() == small);
    for (int64_t t = 0; t < 2 * c; ++t) session.decode(random_ids({2}, config.vocab_size, seed + 3 + uint64_t(t)));
    CHECK(session.state_bytes() == small);
  }
}

TEST_CASE("streaming: bad inputs give clear errors", "[nn][streaming]") {
  const MegalodonConfig config = MegalodonConfig::preset("test");
  nn::Megalodon model(config);
  CHECK(contains(error_message([&] { StreamingSession(model, 1); }), "model.eval()"));
  model.eval();
  CHECK(contains(error_message([&] { StreamingSession(model, 0); }), "batch must be >= 1"));
  CHECK(contains(error_message([&] { StreamingSession(model, 1, windowed(4, 3)); }), "norm_window_after_chunks"));
  StreamingOptions bad_mode = exact();
  bad_mode.timestep_norm_mode = "running";
  CHECK(contains(error_message([&] { StreamingSession(model, 1, bad_mode); }), "\"running\""));
  StreamingSession session(model, 2);
  CHECK(contains(error_message([&] { session.prefill(Tensor::zeros({2, 4})); }), "integer"));
  CHECK(contains(error_message([&] { session.prefill(Tensor::zeros({3, 4}, DType::i64)); }), "[2, n >= 1]"));
  CHECK(contains(error_message([&] { session.prefill(Tensor::zeros({2, 0}, DType::i64)); }), "[2, n >= 1]"));
  CHECK(contains(error_message([&] { session.decode(Tensor::zeros({2, 1}, DType::i64)); }), "one token id"));
  CHECK(contains(error_message([&] { session.decode(Tensor::full({2}, 50, DType::i64)); }), "50"));
}

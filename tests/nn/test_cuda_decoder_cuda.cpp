// CudaDecoder against Megalodon::forward: after a prefill through forward(), every decoded token's
// logits and the exported state follow forward() called token by token, on the GPU in the same dtype
// and in f64 on the CPU, across several chunk boundaries; the captured graph and plain launches agree
// bit for bit; a step allocates nothing; the greedy choice on the device is the host's.
#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

#include "apps/lib/sampling.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "cuda/decode_greedy.h"
#include "nn/cuda_decoder.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

MGL_CUDA_TEST_FILE

namespace {

// Widths that are multiples of 8: every product takes the 16-byte-load path; SwiGLU, two heads.
MegalodonConfig vector_config() {
  return MegalodonConfig::from_json(R"({"model_dim": 48, "z_dim": 16, "value_dim": 32, "ffn_hidden_dim": 64,
                                        "norm_num_groups": 6, "cema_ndim": 8, "vocab_size": 203, "chunk_size": 16})",
                                    MegalodonConfig::preset("test"));
}

// Odd widths (V = 10, F = 18: the scalar path of wh2 and fc2), one head, and the other options:
// SiLU FFN, tied and scaled embedding, no affine norms, rescaled FFN output (chunk 8).
MegalodonConfig scalar_config() {
  return MegalodonConfig::from_json(R"({"num_heads": 1, "value_dim": 10, "ffn_hidden_dim": 18, "swiglu": false,
                                        "share_embedding": true, "scale_embedding": true, "norm_affine": false,
                                        "rescale_nffn": true})",
                                    MegalodonConfig::preset("test"));
}

// A model whose parameters are its initialisation plus uniform noise in [-0.1, 0.1), so that norm
// scales, biases and the q/k affine (zero at init) all carry signal. f32, on the CPU, eval mode.
std::unique_ptr<nn::Megalodon> noisy_model(const MegalodonConfig& config, uint64_t seed) {
  Generator gen(seed);
  nn::InitOptions options;
  options.generator = &gen;
  auto model = std::make_unique<nn::Megalodon>(config, options);
  model->eval();
  NoGradGuard no_grad;
  for (const nn::Parameter& p : model->named_parameters()) {
    Tensor noise = Tensor::empty(p.tensor.shape());
    uniform_(noise, -0.1, 0.1, gen);
    add_(p.tensor, noise);
  }
  return model;
}

// The same parameter values in a model of `parameter_dtype` on `device`, computing in `compute_dtype`.
std::unique_ptr<nn::Megalodon> clone(const nn::Megalodon& from, DType parameter_dtype, const Device& device,
                                     DType compute_dtype) {
  nn::InitOptions options;
  options.dtype = parameter_dtype;
  options.device = device;
  auto model = std::make_unique<nn::Megalodon>(from.config(), options);
  model->eval();
  model->set_compute_dtype(compute_dtype);
  NoGradGuard no_grad;
  const auto source = from.named_parameters(), target = model->named_parameters();
  REQUIRE(source.size() == target.size());
  for (size_t i = 0; i < source.size(); ++i) copy_(target[i].tensor, source[i].tensor);
  return model;
}

// forward() on one token per sequence (`column` [B, 1]), continuing `state`: the logits [B, vocab].
Tensor forward_token(const nn::Megalodon& model, const Tensor& column, nn::ModelState& state) {
  nn::ModelState next;
  const Tensor logits = model.forward(column, &state, &next);
  state = std::move(next);
  return reshape(logits, {logits.size(0), logits.size(2)});
}

// Token t of every sequence of ids [B, L], as the decoder takes it: [B] i64 on the host.
Tensor token(const Tensor& ids, int64_t t) { return contiguous(reshape(contiguous(slice(ids, 1, t, t + 1)), {ids.size(0)})); }

// The largest relative error over the parts of a state, and the part it is in (infinite when the
// counts or the cache lengths differ: those must match exactly).
struct StateError {
  double worst = 0.0;
  std::string where;
  void add(double error, const std::string& part) {
    if (error > worst || std::isnan(error)) worst = error, where = part;
  }
};

// The error of the running group means in units of the groups' standard deviations,
// ‖mean - mean_ref‖ / ‖sqrt(var_ref)‖: a group's values are normalised as (x - mean) / sqrt(var), so
// that is the scale on which an error in the mean matters. (Relative to the means themselves, which
// are differences of nearly equal values, bf16 rounding over dozens of steps can exceed 1% for
// forward() too.)
double mean_error(const TimestepNormState& got, const TimestepNormState& want) {
  const std::vector<double> g = got.mean.to_vector<double>(), w = want.mean.to_vector<double>(),
                            v = want.var.to_vector<double>();
  double difference = 0.0, scale = 0.0;
  for (size_t i = 0; i < w.size(); ++i) difference += (g[i] - w[i]) * (g[i] - w[i]), scale += v[i];
  return std::sqrt(difference / scale);
}

StateError state_error(const nn::ModelState& got, const nn::ModelState& want) {
  StateError e;
  if (got.layers.size() != want.layers.size()) return {INFINITY, "layer count"};
  auto add_norm = [&](const TimestepNormState& g, const TimestepNormState& w, const std::string& part) {
    e.add(g.count.to_vector<int64_t>() == w.count.to_vector<int64_t>() ? 0.0 : INFINITY, part + " count");
    e.add(mean_error(g, w), part + " mean");
    e.add(relative_error(g.var, w.var), part + " var");
  };
  add_norm(got.final_norm, want.final_norm, "final norm");
  for (size_t i = 0; i < want.layers.size(); ++i) {
    const nn::LayerState &g = got.layers[i], &w = want.layers[i];
    const std::string layer = "layer " + std::to_string(i);
    if (g.cached_tokens() != w.cached_tokens()) return {INFINITY, layer + " cache length"};
    add_norm(g.norm, w.norm, layer + " norm");
    e.add(relative_error(g.cema, w.cema), layer + " CEMA");
    if (w.cached_tokens() > 0) {
      e.add(relative_error(g.keys, w.keys), layer + " keys");
      e.add(relative_error(g.values, w.values), layer + " values");
    }
  }
  return e;
}

}  // namespace

TEST_CASE("CudaDecoder: every step follows Megalodon::forward on the GPU and the f64 CPU reference",
          "[cuda][nn][decoder]") {
  const Device gpu = Device::cuda(0);
  struct Case {
    MegalodonConfig config;
    int64_t batch;  // 5: two tiles of the products' batch loop; 2: one
  };
  for (const Case& k : {Case{vector_config(), 5}, Case{scalar_config(), 2}}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      const uint64_t seed = fresh_seed();
      const int64_t B = k.batch, c = k.config.chunk_size, prefill = c + 3, steps = 3 * c;
      INFO(dtype_name(dtype) << ", D " << k.config.model_dim << ", B " << B << ", seed " << seed);
      const double tolerance = tolerance_for(dtype);
      const auto host_model = noisy_model(k.config, seed);
      const auto model = clone(*host_model, DType::f32, gpu, dtype);
      const auto reference = clone(*host_model, DType::f64, Device::cpu(), DType::f64);
      const Tensor ids = random_ids({B, prefill + steps}, k.config.vocab_size, seed + 1);
      NoGradGuard no_grad;
      nn::ModelState state, reference_state;
      model->forward(to(slice(ids, 1, 0, prefill), gpu), nullptr, &state);
      reference->forward(slice(ids, 1, 0, prefill), nullptr, &reference_state);

      nn::CudaDecoder decoder(*model, B, dtype);
      decoder.import_state(state);
      REQUIRE(decoder.position() == 3);
      for (int64_t t = prefill; t < prefill + steps; ++t) {
        const Tensor column = contiguous(slice(ids, 1, t, t + 1));
        const Tensor want = forward_token(*model, to(column, gpu), state);
        const Tensor truth = forward_token(*reference, column, reference_state);
        const Tensor& got = decoder.step(token(ids, t));
        const nn::ModelState decoded = decoder.export_state();
        INFO("token " << t << ", position in the chunk after it " << decoder.position());
        // Against the f64 reference: the decoder's logits and state within the dtype's tolerance. In
        // bf16 the state carries dozens of steps of bf16 weights and caches, over which forward()
        // itself drifts past 1% of the truth (e.g. in the keys or values): the decoder starts from
        // that state (import_state), so its state and the logits computed from it may be off by the
        // dtype's tolerance plus forward()'s own error (seen: logits 1.04% off with forward()'s
        // values 1.03% off). Against forward() in the same dtype: in f32 both are
        // within rounding of the truth; in bf16 forward() rounds every op's output (the decoder
        // keeps f32 activations), so the two may differ by at most the sum of their distances to
        // the truth.
        const StateError decoder_error = state_error(decoded, reference_state);
        const StateError forward_error = state_error(state, reference_state);
        const StateError between = state_error(decoded, state);
        INFO("state: decoder vs f64 " << decoder_error.worst << " (" << decoder_error.where << "), forward() vs f64 "
                                      << forward_error.worst << " (" << forward_error.where << ")");
        const bool exact = dtype == DType::f32;
        CHECK(relative_error(got, truth) <= tolerance + (exact ? 0.0 : forward_error.worst));
        CHECK(decoder_error.worst <= tolerance + (exact ? 0.0 : forward_error.worst));
        CHECK(relative_error(got, want) <= tolerance + (exact ? 0.0 : relative_error(want, truth)));
        CHECK(between.worst <= tolerance + (exact ? 0.0 : forward_error.worst));
      }
      CHECK(decoder.position() == 3);  // prefill + steps = 4 chunks + 3 tokens
    }
  }
}

TEST_CASE("CudaDecoder: the captured graph and plain launches give identical results", "[cuda][nn][decoder]") {
  const Device gpu = Device::cuda(0);
  const MegalodonConfig config = vector_config();
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t B = 3, c = config.chunk_size, prefill = 5, steps = 2 * c + 1;
  const auto model = clone(*noisy_model(config, seed), DType::f32, gpu, DType::bf16);
  const Tensor ids = random_ids({B, prefill + steps}, config.vocab_size, seed + 1);
  NoGradGuard no_grad;
  nn::ModelState state;
  model->forward(to(slice(ids, 1, 0, prefill), gpu), nullptr, &state);
  nn::CudaDecoder graph(*model, B, DType::bf16);
  nn::CudaDecoder plain(*model, B, DType::bf16, nn::DecoderOptions{gpu, false});
  REQUIRE(graph.uses_graph());
  REQUIRE_FALSE(plain.uses_graph());
  graph.import_state(state);
  plain.import_state(state);
  for (int64_t t = prefill; t < prefill + steps; ++t) {
    INFO("token " << t);
    CHECK(graph.step(token(ids, t)).to_vector<float>() == plain.step(token(ids, t)).to_vector<float>());
  }
  const nn::ModelState a = graph.export_state(), b = plain.export_state();
  for (size_t i = 0; i < a.layers.size(); ++i) {
    CHECK(a.layers[i].cema.to_vector<float>() == b.layers[i].cema.to_vector<float>());
    CHECK(a.layers[i].keys.to_vector<float>() == b.layers[i].keys.to_vector<float>());
    CHECK(a.layers[i].norm.mean.to_vector<float>() == b.layers[i].norm.mean.to_vector<float>());
  }
}

TEST_CASE("CudaDecoder: a step allocates nothing", "[cuda][nn][decoder]") {
  const Device gpu = Device::cuda(0);
  const MegalodonConfig config = vector_config();
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto model = clone(*noisy_model(config, seed), DType::f32, gpu, DType::bf16);
  const Tensor ids = random_ids({2, 101}, config.vocab_size, seed + 1);
  std::vector<Tensor> tokens;
  for (int64_t t = 0; t < 101; ++t) tokens.push_back(token(ids, t));
  NoGradGuard no_grad;
  for (bool use_graph : {true, false}) {
    INFO("graph " << use_graph);
    nn::CudaDecoder decoder(*model, 2, DType::bf16, nn::DecoderOptions{gpu, use_graph});
    decoder.step(tokens[0]);
    synchronize(gpu);
    const int64_t before = memory_stats(gpu).current_bytes;
    reset_peak_memory(gpu);
    for (int64_t t = 1; t <= 100; ++t) decoder.step(tokens[t]);
    synchronize(gpu);
    CHECK(memory_stats(gpu).current_bytes == before);
    CHECK(memory_stats(gpu).peak_bytes == before);
  }
}

TEST_CASE("CudaDecoder: bad inputs are reported", "[cuda][nn][decoder]") {
  const Device gpu = Device::cuda(0);
  const MegalodonConfig config = scalar_config();
  const auto model = clone(*noisy_model(config, fresh_seed()), DType::f32, gpu, DType::f32);
  NoGradGuard no_grad;
  CHECK(contains(error_message([&] { nn::CudaDecoder d(*model, 1, DType::f64); }), "f32 or bf16"));
  CHECK(contains(error_message([&] { nn::CudaDecoder d(*model, 0, DType::f32); }), "batch must be positive"));
  nn::CudaDecoder decoder(*model, 2, DType::f32);
  CHECK(contains(error_message([&] { decoder.step(Tensor::zeros({3}, DType::i64)); }), "expected contiguous i64 ids [2]"));
  CHECK(contains(error_message([&] { decoder.step(Tensor::zeros({2}, DType::i32)); }), "expected contiguous i64 ids"));
  CHECK(contains(error_message([&] { decoder.step(Tensor::full({2}, double(config.vocab_size), DType::i64)); }),
                 "outside the vocabulary"));
  nn::ModelState one_layer;
  one_layer.layers.resize(1);
  CHECK(contains(error_message([&] { decoder.import_state(one_layer); }), "layers, the model has"));
  nn::ModelState other_batch;
  model->forward(to(random_ids({3, 4}, config.vocab_size, 1), gpu), nullptr, &other_batch);
  CHECK(contains(error_message([&] { decoder.import_state(other_batch); }), "do not fit batch 2"));
}

TEST_CASE("CudaDecoder: bad greedy selections are reported", "[cuda][nn][decoder]") {
  const MegalodonConfig config = scalar_config();
  const auto model = clone(*noisy_model(config, fresh_seed()), DType::f32, Device::cuda(0), DType::f32);
  NoGradGuard no_grad;
  nn::CudaDecoder decoder(*model, 2, DType::f32);
  CHECK(contains(error_message([&] { decoder.select_greedily(0.0, 0, {{}, {}}); }), "penalty must be > 0"));
  CHECK(contains(error_message([&] { decoder.select_greedily(1.0, config.vocab_size + 1, {{}, {}}); }), "choices must be"));
  CHECK(contains(error_message([&] { decoder.select_greedily(1.0, 0, {{}}); }), "the batch is 2"));
  CHECK(contains(error_message([&] { decoder.select_greedily(1.0, 0, {{1}, {-1}}); }), "outside the vocabulary"));
  CHECK(contains(error_message([&] { decoder.ids_on_host(); }), "no copy_ids_to_host()"));
}

#ifdef MGL_WITH_CUDA
// The greedy kernel against the rule of cuda/decode_greedy.h on rows built to hit every branch: a
// tie (the lower id wins), a larger logit past `choices` (ignored), the penalty on positive and on
// negative logits, and rows with a NaN or +inf logit (reported as -1).
TEST_CASE("decode_greedy: first maximum after the repetition penalty, in double", "[cuda][nn][decoder]") {
  const Device gpu = Device::cuda(0);
  const int64_t B = 5, vocab = 3000, choices = 2900;
  const double penalty = 1.7;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::vector<float> logits = random_tensor({B, vocab}, seed, DType::f32, -4.0, 4.0).to_vector<float>();
  std::vector<int32_t> seen(B * vocab, 0);
  const std::vector<float> marks = random_tensor({B, vocab}, seed + 1, DType::f32).to_vector<float>();
  for (int64_t i = 0; i < B * vocab; ++i) seen[i] = marks[i] > 0.5f;  // about a quarter of the ids
  auto at = [&](int64_t b, int64_t i) -> float& { return logits[b * vocab + i]; };
  at(0, 2950) = 100.0f;                            // past the choices
  at(0, 1234) = at(0, 77) = 9.0f, seen[77] = seen[1234] = 0;  // a tie: 77
  at(1, 500) = 9.0f, seen[vocab + 500] = 1;        // 9 / 1.7 = 5.29 loses to
  at(1, 2001) = 6.0f, seen[vocab + 2001] = 0;      // 6
  for (int64_t i = 0; i < vocab; ++i) at(2, i) = -5.0f - 0.001f * float(i % 7);
  at(2, 10) = -0.01f, seen[2 * vocab + 10] = 1;    // -0.01 x 1.7 = -0.017 loses to
  at(2, 20) = -0.015f, seen[2 * vocab + 20] = 0;   // -0.015
  at(3, 1700) = NAN;
  at(4, 3) = INFINITY;
  // apps::Sampler's greedy choice among the first `choices` ids (rows 3 and 4 are invalid: -1).
  apps::SamplingOptions greedy;
  greedy.greedy = true, greedy.repetition_penalty = penalty;
  auto expected = [&](int64_t b) -> int64_t {
    if (b >= 3) return -1;
    std::unordered_set<int32_t> context;  // the marks the penalty can matter for
    for (int64_t i = 0; i < choices; ++i)
      if (seen[b * vocab + i]) context.insert(static_cast<int32_t>(i));
    const auto row = logits.begin() + b * vocab;
    return apps::Sampler(greedy, seed).next(std::vector<float>(row, row + choices), context);
  };
  Tensor logits_gpu = to(Tensor::from_vector(logits, {B, vocab}), gpu);
  Tensor seen_gpu = to(Tensor::from_vector(seen, {B, vocab}), gpu);
  Tensor ids = Tensor::zeros({B}, DType::i64, gpu);
  cuda::decode_greedy({B, vocab, choices, logits_gpu.data<float>(), penalty, seen_gpu.data<int32_t>(), ids.data<int64_t>()},
                      compute_stream(gpu));
  const std::vector<int64_t> got = to(ids, Device::cpu()).to_vector<int64_t>();
  const std::vector<int32_t> seen_after = to(seen_gpu, Device::cpu()).to_vector<int32_t>();
  CHECK(got[0] == 77);
  CHECK(got[1] == 2001);
  CHECK(got[2] == 20);
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    CHECK(got[b] == expected(b));
    for (int64_t i = 0; i < vocab; ++i)
      if (seen_after[b * vocab + i] != seen[b * vocab + i]) CHECK((got[b] == i && seen_after[b * vocab + i] == 1));
    if (got[b] >= 0) CHECK(seen_after[b * vocab + got[b]] == 1);
  }
}
#endif

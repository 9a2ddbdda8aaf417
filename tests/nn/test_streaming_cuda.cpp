// Streaming inference on CUDA (nn/streaming.h) against the f64 CPU reference: a prefill across two
// chunk boundaries and decoding across two more, in the exact mode against one whole forward and in
// the windowed mode against the CPU session, in f32 and bf16; the state stays constant on the GPU;
// greedy decoding on the device chooses the tokens the host would.
// Tolerance rule of the model tests (test_megalodon_cuda.cpp): the GPU's error against f64 may not
// exceed twice that of our CPU ops in the same dtype, or the per-kernel tolerance, whichever is larger.
#include <algorithm>
#include <unordered_set>

#include "apps/lib/sampling.h"
#include "autograd/grad_mode.h"
#include "nn/megalodon_models.h"
#include "nn/streaming.h"
#include "nn/streaming_runs.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::StreamingSession;

MGL_CUDA_TEST_FILE

namespace {

// The logits of streaming ids [B, L] (on the CPU) through a session on the model's device:
// prefill of the first `prompt` tokens, then one decode per token.
Tensor streamed(const nn::Megalodon& model, const Tensor& ids, int64_t prompt, const nn::StreamingOptions& options) {
  StreamingSession session(model, ids.size(0), options);
  return to(stream(session, ids, {prompt}), Device::cpu());
}

}  // namespace

TEST_CASE("streaming: CUDA prefill and decode match the f64 reference in f32 and bf16", "[cuda][nn][streaming]") {
  const nn::MegalodonConfig config = small_config();  // chunk 16
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const auto reference = reference_model(config, seed);
    const auto cpu_model = copy_model(*reference, Device::cpu(), dtype);
    const auto gpu_model = copy_model(*reference, Device::cuda(0), dtype);
    for (nn::Megalodon* model : {reference.get(), cpu_model.get(), gpu_model.get()}) model->eval();
    NoGradGuard no_grad;
    // 37 prompt tokens (two chunks and 5), then 24 decoded: the boundaries at 48 and 64 ... 61 tokens.
    const Tensor ids = random_ids({2, 61}, config.vocab_size, seed + 2);
    auto check = [&](const std::string& what, const Tensor& gpu, const Tensor& cpu, const Tensor& want) {
      const double gpu_error = relative_error(gpu, want), cpu_error = relative_error(cpu, want);
      INFO(what << ": GPU error " << gpu_error << ", CPU error " << cpu_error);
      CHECK(gpu_error <= std::max(2.0 * cpu_error, tolerance_for(dtype)));
    };
    // Exact: one whole forward of the reference.
    const Tensor whole = reference->forward(ids);
    check("exact", streamed(*gpu_model, ids, 37, exact()), streamed(*cpu_model, ids, 37, exact()), whole);
    // Windowed (re-estimation after 3 chunks from the last 2): the reference session.
    const nn::StreamingOptions window = windowed(2, 3);
    const Tensor long_ids = random_ids({1, 7 * 16 + 9}, config.vocab_size, seed + 3);
    check("windowed", streamed(*gpu_model, long_ids, 100, window), streamed(*cpu_model, long_ids, 100, window),
          streamed(*reference, long_ids, 100, window));
  }
}

TEST_CASE("streaming: the CUDA state does not grow with the context", "[cuda][nn][streaming]") {
  const nn::MegalodonConfig config = small_config();
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto model = copy_model(*reference_model(config, seed), Device::cuda(0), DType::bf16);
  model->eval();
  StreamingSession session(*model, 2, windowed(2, 3));
  session.prefill(random_ids({2, 3 * 16 + 5}, config.vocab_size, seed + 1));
  const int64_t small = session.state_bytes();
  CHECK(session.state().layers[0].cema.is_cuda());
  session.prefill(random_ids({2, 27 * 16}, config.vocab_size, seed + 2));
  CHECK(session.state_bytes() == small);
  for (int64_t t = 0; t < 20; ++t) session.decode(random_ids({2}, config.vocab_size, seed + 3 + uint64_t(t)));
  session.prefill(random_ids({2, 12}, config.vocab_size, seed + 30));  // back to the same phase: 5 + 20 + 12 = 37 = 2c + 5
  CHECK(session.state_bytes() == small);
}

TEST_CASE("streaming: greedy decoding on the device chooses the host's tokens", "[cuda][nn][streaming]") {
  const nn::MegalodonConfig config = small_config();  // chunk 16
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto model = copy_model(*reference_model(config, seed), Device::cuda(0), DType::bf16);
  model->eval();
  NoGradGuard no_grad;
  const int64_t B = 2, prompt_length = 37, steps = 40, choices = config.vocab_size - 5;
  const double penalty = 1.3;
  const Tensor prompt = random_ids({B, prompt_length}, config.vocab_size, seed + 1);
  const std::vector<int64_t> prompt_ids = prompt.to_vector<int64_t>();
  std::vector<std::unordered_set<int32_t>> context(B);  // what the repetition penalty sees
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < prompt_length; ++t) context[b].insert(static_cast<int32_t>(prompt_ids[b * prompt_length + t]));
  // The host's greedy choice (apps::Sampler) among the first `choices` ids, added to the context.
  apps::SamplingOptions greedy;
  greedy.greedy = true, greedy.repetition_penalty = penalty;
  apps::Sampler sampler(greedy, seed);
  auto choose = [&](const Tensor& logits) {
    const std::vector<float> values = to(logits, Device::cpu()).to_vector<float>();
    std::vector<int64_t> ids(B);
    for (int64_t b = 0; b < B; ++b) {
      const auto row = values.begin() + b * config.vocab_size;
      std::unordered_set<int32_t> within;  // the context ids among the choices: the others cannot be chosen
      for (int32_t id : context[b])
        if (id < choices) within.insert(id);
      ids[b] = sampler.next(std::vector<float>(row, row + choices), within);
      context[b].insert(static_cast<int32_t>(ids[b]));
    }
    return ids;
  };
  StreamingSession host(*model, B, windowed(2, 3)), device(*model, B, windowed(2, 3));
  std::vector<int64_t> fed = choose(host.prefill(prompt));
  device.prefill(prompt);
  CHECK(device.can_decode_greedily_on_device());
  std::vector<std::vector<int32_t>> seen;  // the prompt and the first token
  for (const auto& ids : context) seen.emplace_back(ids.begin(), ids.end());
  device.start_greedy(fed, penalty, choices, seen);
  for (int64_t t = 0; t < steps; ++t) {
    const std::vector<int64_t> want = choose(host.decode(Tensor::from_vector(fed, {B}, DType::i64)));
    const bool feed = t + 1 < steps;
    CHECK(device.next_greedy(feed) == want);
    fed = want;
  }
  CHECK(device.position() == host.position());
  CHECK(relative_error(device.state().layers[0].cema, host.state().layers[0].cema) == 0.0);
  // The decoded tokens joined the windowed mode's token window: the same re-estimation after the next
  // prefill (77 + 3 = 80 = 5 chunks: re-estimated from the last two).
  const Tensor more = random_ids({B, 16}, config.vocab_size, seed + 2);
  CHECK(relative_error(device.prefill(more), host.prefill(more)) == 0.0);
  CHECK(contains(error_message([&] { device.next_greedy(true); }), "call start_greedy() first"));
}

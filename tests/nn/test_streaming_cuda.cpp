// Streaming inference on CUDA (nn/streaming.h) against the f64 CPU reference: a prefill across two
// chunk boundaries and decoding across two more, in the exact mode against one whole forward and in
// the windowed mode against the CPU session, in f32 and bf16; the state stays constant on the GPU.
// Tolerance rule of the model tests (test_megalodon_cuda.cpp): the GPU's error against f64 may not
// exceed twice that of our CPU ops in the same dtype, or the per-kernel tolerance, whichever is larger.
#include <algorithm>

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

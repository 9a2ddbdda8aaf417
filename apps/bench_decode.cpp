// bench_decode: decoding speed of a MEGALODON model (default mega200M, random weights) on one GPU:
// tokens/s of nn::CudaDecoder with its captured CUDA graph and with plain launches, against the
// baseline of Megalodon::forward called token by token with a ModelState, and against the ideal of a
// step that only reads the weights once (weight bytes / HBM bandwidth).
//
//   build/bin/bench_decode [--config mega200M] [--dtype bf16|f32] [--batch 1] [--bandwidth 4.8e12]
//                          [--baseline-tokens 32] [--graph-only] [--breakdown]
//
// --breakdown also times each kind of launch of a step on its own: a CUDA graph of that launch for
// every layer (so the weights come from HBM as in a real step), replayed many times.
//
// The decoder is timed over a whole attention chunk of steps (every KV-cache length 0 .. c-1 once),
// so the figure includes the attention's growth within a chunk. Exits with status 0 and a message
// when no GPU is present.
#include <cstdio>
#include <string>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/timing.h"
#include "cuda/decode_graph.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "nn/cuda_decoder.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

// Bytes of weights a step reads: every parameter once in the compute dtype, except the embedding
// table, of which a step reads B rows (tied, it is read whole as the LM head).
double weight_bytes(const nn::MegalodonConfig& c, DType dtype) {
  const int64_t table = c.share_embedding ? 0 : c.vocab_size * c.model_dim;
  return double(c.parameter_count() - table) * double(dtype_size(dtype));
}

// Microseconds per launch of each kind, from graphs of that kind alone; their sum against the step.
void print_breakdown(const nn::Megalodon& model, int64_t batch, DType dtype, const Device& gpu, double step_ms) {
  nn::CudaDecoder decoder(model, batch, dtype, nn::DecoderOptions{gpu, false});
  const int64_t layers = model.config().num_layers;
  // Half a chunk of keys in the cache: the attention's average load over a chunk.
  while (decoder.position() < model.config().chunk_size / 2) decoder.step();
  std::printf("  per launch, each kind alone in a graph of all %lld layers (%lld keys cached):\n",
              static_cast<long long>(layers), static_cast<long long>(decoder.position()));
  double sum_us = 0.0;
  for (const nn::CudaDecoder::Launch kind : nn::CudaDecoder::kLaunches) {
    double ms = 0;
    MGL_ON_CUDA({  // a build without CUDA has no graphs (and never gets here: no GPU)
      cuda::DecodeGraph* graph = cuda::capture_graph(compute_stream(gpu), [&] { decoder.record_launches(kind); });
      ms = apps::mean_ms(gpu, 3, 200, [&] { cuda::launch_graph(graph, compute_stream(gpu)); });
      cuda::destroy_graph(graph);
    });
    const int64_t launches = kind == nn::CudaDecoder::Launch::head ? 1 : layers;
    sum_us += ms * 1e3;
    std::printf("    %-28s %8.2f us x %2lld = %8.1f us\n", nn::CudaDecoder::launch_name(kind), ms * 1e3 / double(launches),
                static_cast<long long>(launches), ms * 1e3);
  }
  std::printf("    %-28s %22.1f us (the whole step: %.1f us)\n", "sum", sum_us, step_ms * 1e3);
}

int run(const std::string& preset, DType dtype, int64_t batch, double bandwidth, int baseline_tokens, bool graph_only,
        bool breakdown) {
  if (!cuda_available()) {
    std::printf("bench_decode: no GPU (%s)\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  const Device gpu = Device::cuda(0);
  const nn::MegalodonConfig config = nn::MegalodonConfig::preset(preset);
  nn::InitOptions options;
  options.device = gpu;
  nn::Megalodon model(config, options);
  model.eval();
  model.set_compute_dtype(dtype);
  NoGradGuard no_grad;
  const int64_t chunk = config.chunk_size;
  std::printf("bench_decode: %s (%lld parameters), %s, batch %lld, chunk %lld, on %s\n", preset.c_str(),
              static_cast<long long>(config.parameter_count()), dtype_name(dtype), static_cast<long long>(batch),
              static_cast<long long>(chunk), gpu.str().c_str());

  std::vector<int64_t> tokens(batch);
  for (int64_t b = 0; b < batch; ++b) tokens[b] = (7919 * b + 17) % config.vocab_size;  // any tokens will do
  const Tensor device_ids = Tensor::from_vector(tokens, {batch, 1}, DType::i64, gpu);

  // Baseline: forward() on one token per call, carrying the state.
  // (--baseline-tokens 0 skips it, e.g. under a profiler that should see the decoder's kernels only.)
  nn::ModelState state;
  const double baseline_ms = baseline_tokens <= 0 ? 0.0 : apps::mean_ms(gpu, 2, baseline_tokens, [&] {
    nn::ModelState next;
    model.forward(device_ids, &state, &next);
    state = std::move(next);
  });

  auto decoder_ms = [&](bool use_graph, int64_t& bytes) {
    const int64_t before = memory_stats(gpu).current_bytes;
    nn::CudaDecoder decoder(model, batch, dtype, nn::DecoderOptions{gpu, use_graph});
    bytes = memory_stats(gpu).current_bytes - before;
    copy_(decoder.ids(), reshape(device_ids, {batch}));
    // Warm up over 16 tokens, then time one chunk: positions 16 .. c-1, then 0 .. 15.
    for (int i = 0; i < 16; ++i) decoder.step();
    return apps::mean_ms(gpu, 0, int(chunk), [&] { decoder.step(); });
  };
  int64_t decoder_bytes = 0;
  const double graph_ms = decoder_ms(true, decoder_bytes);
  const double plain_ms = graph_only ? 0.0 : decoder_ms(false, decoder_bytes);
  const double ideal_ms = weight_bytes(config, dtype) / bandwidth * 1e3;

  auto line = [&](const char* what, double ms) {
    if (ms <= 0.0) return;  // not measured
    std::printf("  %-34s %9.3f ms/token %10.0f tokens/s", what, ms, double(batch) / (ms * 1e-3));
    if (baseline_ms > 0.0) std::printf(" %8.2fx baseline", baseline_ms / ms);
    std::printf(" %6.1f%% of ideal\n", 100.0 * ideal_ms / ms);
  };
  line("Megalodon::forward token by token", baseline_ms);
  line("CudaDecoder, plain launches", plain_ms);
  line("CudaDecoder, CUDA graph", graph_ms);
  std::printf("  ideal (%.0f MB of weights / %.2f TB/s) %7.3f ms/token %10.0f tokens/s\n",
              weight_bytes(config, dtype) / 1e6, bandwidth / 1e12, ideal_ms, double(batch) / (ideal_ms * 1e-3));
  if (breakdown) print_breakdown(model, batch, dtype, gpu, graph_ms);
  std::printf("  decoder memory: %.1f MB (weights in %s, state and buffers; independent of the context length)\n",
              double(decoder_bytes) / 1e6, dtype_name(dtype));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_decode: tokens/s of CudaDecoder vs Megalodon::forward token by token"};
  std::string preset = "mega200M", dtype = "bf16";
  int64_t batch = 1;
  int baseline_tokens = 32;
  bool graph_only = false, breakdown = false;
  double bandwidth = 4.8e12;  // H200 HBM3e, bytes/s
  app.add_option("--config", preset, "model preset");
  app.add_option("--dtype", dtype, "compute dtype")->check(CLI::IsMember({"bf16", "f32"}));
  app.add_option("--batch", batch, "sequences decoded together")->check(mgl::apps::integer_in(1, kMaxSize));
  app.add_option("--bandwidth", bandwidth, "HBM bandwidth in bytes/s for the ideal bound")
      ->check(mgl::apps::real_in(ValueRange::above(0)));
  app.add_option("--baseline-tokens", baseline_tokens, "tokens of the forward() baseline (0: skip it)")
      ->check(mgl::apps::integer_in(0, kMaxSize));
  app.add_flag("--graph-only", graph_only, "time the decoder with its graph only (not with plain launches)");
  app.add_flag("--breakdown", breakdown, "also time each kind of launch of a step on its own");
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_decode")) return *status;
  try {
    return run(preset, dtype_from_name(dtype), batch, bandwidth, baseline_tokens, graph_only, breakdown);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
}

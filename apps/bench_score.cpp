// bench_score: the speed of scoring a long token stream (what `generate --score FILE` does) with a MEGALODON
// model, random weights and random ids: tokens/s over the whole stream, and the peak device memory, which must
// not grow with the stream's length (apps/lib/scoring.h: two chunks per model call, the state carried). The
// score goes through apps::score_tokens, the function generate's scoring calls per file, so the figure is
// generate's without tokenizing (issue 13: "scoring >= 150K tokens/s for 1M tokens of mega200M, windowed
// TimestepNorm").
//
//   build/bin/bench_score [--config mega200M] [--set section.key=value]... [--tokens 1048576]
//                         [--dtype bf16|f32] [--norm-mode windowed|exact] [--warmup-tokens 16384]
//                         [--device auto|cpu|cuda|cuda:N]
//                         [--profile [--profile-steps K] [--profile-top T] [--profile-json FILE]]
//
// The config is read as train reads it (only its model section counts). A warm-up stream of --warmup-tokens
// (the memory pool fills, cuBLAS picks its kernels) is scored first and not timed. --profile then scores a
// stream of K more model calls (two chunks each) under the kernel profiler (apps/lib/kernel_profiler.h),
// outside the timed stream, and prints the table per call. With --device auto (the default) and no GPU it
// exits with status 0 and a message; --device cpu runs on the CPU (small configs: `--config tiny`).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/kernel_profiler.h"
#include "apps/lib/run_config.h"
#include "apps/lib/scoring.h"
#include "apps/lib/trainer.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "nn/megalodon.h"

using namespace mgl;

namespace {

struct Args {
  std::string config = "mega200M";
  std::vector<std::string> overrides;
  int64_t tokens = int64_t(1) << 20, warmup_tokens = 16384;
  std::string dtype = "bf16", norm_mode = "windowed", device = "auto";
  apps::ProfileOptions profile;
};

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& v : ids) v = id(rng);
  return ids;
}

int run(const Args& a) {
  if (a.device == "auto" && !cuda_available()) {
    std::printf("bench_score: no GPU (%s)\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  const Device device = apps::resolve_device(a.device);
  std::optional<apps::KernelProfiler> profiler;
  if (a.profile.enabled) profiler.emplace(device);
  apps::RunConfig c = apps::RunConfig::load(a.config);
  for (const std::string& assignment : a.overrides) c.set(assignment);
  c.validate();
  apps::report_ignored_keys("bench_score", c.ignored_keys);
  const nn::MegalodonConfig& config = c.model;
  nn::InitOptions init;
  init.device = device;
  nn::Megalodon model(config, init);
  model.eval();
  model.set_compute_dtype(dtype_from_name(a.dtype));
  apps::ScoringOptions options;
  options.streaming = nn::StreamingOptions::from_config(config);
  options.streaming->timestep_norm_mode = a.norm_mode;
  std::printf("bench_score: %s (%lld parameters), %s, %s TimestepNorm, chunk %lld, %lld tokens, on %s\n",
              a.config.c_str(), static_cast<long long>(config.parameter_count()), a.dtype.c_str(), a.norm_mode.c_str(),
              static_cast<long long>(config.chunk_size), static_cast<long long>(a.tokens), device.str().c_str());

  apps::score_tokens(model, random_ids(a.warmup_tokens, config.vocab_size, 1), options);
  const std::vector<int32_t> ids = random_ids(a.tokens, config.vocab_size, 2);
  synchronize(device);
  reset_peak_memory(device);
  const auto start = std::chrono::steady_clock::now();
  const apps::ScoringResult result = apps::score_tokens(model, ids, options);
  synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const int64_t call = nn::StreamingSession::kChunksPerCall * config.chunk_size;
  std::printf("  scored %lld tokens in %.3f s: %.0f tokens/s (%.3f ms per call of %lld tokens), mean NLL %.4f\n",
              static_cast<long long>(result.tokens), seconds, double(result.tokens) / seconds,
              1e3 * seconds * double(call) / double(a.tokens), static_cast<long long>(call), result.mean_nll);
  std::printf("  peak device memory while scoring: %.3f GiB\n",
              double(memory_stats(device).peak_bytes) / double(int64_t(1) << 30));
  if (profiler) {  // K calls of two whole chunks: a stream of K·call + 1 tokens
    profiler->resume();
    apps::score_tokens(model, random_ids(a.profile.steps * call + 1, config.vocab_size, 3), options);
    profiler->pause();
    apps::report_profile(profiler->summary(a.profile.steps), a.profile, stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_score: tokens/s of scoring a long stream (generate --score) on one GPU"};
  Args a;
  app.option_defaults()->always_capture_default();  // --help shows every default
  apps::add_run_config_options(app, a.config, a.overrides);
  app.add_option("--tokens", a.tokens, "tokens in the timed stream")->check(apps::integer_in(2, kMaxSize));
  app.add_option("--warmup-tokens", a.warmup_tokens, "tokens in the untimed warm-up stream")
      ->check(apps::integer_in(2, kMaxSize));
  app.add_option("--dtype", a.dtype, "compute dtype")->check(CLI::IsMember({"bf16", "f32"}));
  app.add_option("--norm-mode", a.norm_mode, "TimestepNorm at inference")
      ->check(CLI::IsMember({"windowed", "exact"}));
  app.add_option("--device", a.device, "auto, cpu, cuda or cuda:N");
  apps::add_profile_options(app, a.profile, "--profile-steps model calls after the timed stream");
  if (auto status = apps::parse_command_line(app, argc, argv, "bench_score")) return *status;
  try {
    return run(a);
  } catch (const std::exception& e) {
    return apps::report_fatal_error("bench_score: error: ", e.what(), true);
  }
}

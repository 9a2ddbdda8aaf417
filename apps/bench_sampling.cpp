// bench_sampling: the host's cost of choosing one token (apps/lib/sampling.h) from a row of logits the
// size of a real vocabulary, per sampling setting, against the greedy choice measured in the same run.
// This is generate's per-token host work when it samples (greedy decoding on a GPU chooses on the
// device instead).
//
//   build/bin/bench_sampling [--vocab 32000] [--context 512] [--iterations 200]
//
// The logits are 3·N(0, 1)-like (uniform sums), so the nucleus of top-p 0.9 holds a realistic few
// hundred tokens; the repetition penalty 1.2 applies to `context` distinct ids.
#include <chrono>
#include <cstdio>
#include <unordered_set>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/sampling.h"
#include "base/philox.h"

using namespace mgl;
using namespace mgl::apps;

int main(int argc, char** argv) {
  CLI::App app{"bench_sampling: host time per sampled token, against the greedy choice"};
  int64_t vocab = 32000, context_size = 512;
  int iterations = 200;
  app.add_option("--vocab", vocab, "logits per row")->check(integer_in(1, kMaxSize));
  app.add_option("--context", context_size, "distinct ids under the repetition penalty")->check(integer_in(0, kMaxSize));
  app.add_option("--iterations", iterations, "timed tokens per setting")->check(integer_in(1, kMaxSize));
  if (auto status = parse_command_line(app, argc, argv, "bench_sampling")) return *status;

  std::vector<float> logits(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) {
    const philox::Uint4 r = philox::block(42, static_cast<uint64_t>(i), 0);
    const double sum = (double(r.x) + double(r.y) + double(r.z) + double(r.w)) * 0x1.0p-32;  // ~N(2, 1/3)
    logits[static_cast<size_t>(i)] = static_cast<float>(3.0 * (sum - 2.0) * 1.7320508);
  }
  std::unordered_set<int32_t> context;
  for (int64_t i = 0; i < context_size; ++i) context.insert(static_cast<int32_t>((i * 7919) % vocab));

  struct Setting {
    const char* name;
    SamplingOptions options;
  };
  const Setting settings[] = {
      {"greedy", {.greedy = true, .repetition_penalty = 1.2}},
      {"temperature 0.8", {.temperature = 0.8, .repetition_penalty = 1.2}},
      {"top-k 50", {.temperature = 0.8, .top_k = 50, .repetition_penalty = 1.2}},
      {"top-p 0.9", {.temperature = 0.8, .top_p = 0.9, .repetition_penalty = 1.2}},
      {"top-k 50, top-p 0.9", {.temperature = 0.8, .top_k = 50, .top_p = 0.9, .repetition_penalty = 1.2}},
  };
  std::printf("bench_sampling: vocabulary %lld, %lld ids under the penalty, %d tokens per setting\n",
              static_cast<long long>(vocab), static_cast<long long>(context_size), iterations);
  double greedy_us = 0;
  for (const Setting& setting : settings) {
    Sampler sampler(setting.options, 1234);
    int64_t checksum = sampler.next(logits, context);  // warm-up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) checksum += sampler.next(logits, context);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / iterations;
    if (greedy_us == 0) greedy_us = us;
    std::printf("  %-22s %9.1f us per token %8.2fx greedy   (ids sum %lld)\n", setting.name, us, us / greedy_us,
                static_cast<long long>(checksum));
  }
  return 0;
}

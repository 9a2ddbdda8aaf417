// bench_train: the speed of one training step for a config: forward + backward + clipping + AdamW, the
// very step `train` runs (apps/lib/training_step.h), on random tokens, so no data folder is needed.
//
//   bench_train [--config NAME|FILE] [--set section.key=value]... [--batch B] [--seq-len L]
//               [--dtype auto|f32|bf16] [--device auto|cpu|cuda] [--seed N] [--warmup W] [--steps S]
//               [--peak-tflops P] [--json FILE] [--profile [--profile-steps K] [--profile-top T] [--profile-json FILE]]
//
// The config is read as train reads it (--config, --set); --batch, --seq-len, --dtype, --seed and
// --peak-tflops set train.batch_size, train.seq_len, train.dtype, train.seed and train.peak_tflops. W
// untimed steps (the memory pool fills, cuBLAS picks its kernels), then S timed ones, each phase of each
// step (forward, backward, optimizer: StepPhase) between device time points (core/cuda_context.h: CUDA
// events on the GPU, the steady clock on the CPU). The timed steps run back to back without a host
// synchronisation, as train's unlogged steps do; the times and the steps' results are read after the
// last. Prints a table and, with --json, writes the same
// figures under the keys tools/bench_reference.py writes, so that a script divides one run by the other:
// tokens/s of the median step, step ms (median, min, max), model FLOPs per token (nn/flops.h), MFU against
// the peak, peak tensor memory, the parameter count and each phase's median ms. --profile then records
// the kernels of K more steps (apps/lib/kernel_profiler.h), outside the timed ones. docs/perf.md,
// "Training step", says what each figure means.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/files.h"
#include "apps/lib/kernel_profiler.h"
#include "apps/lib/run_config.h"
#include "apps/lib/trainer.h"
#include "apps/lib/training_step.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "nn/flops.h"

using namespace mgl;
using namespace mgl::apps;
using json = nlohmann::ordered_json;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr const char* kPhaseNames[] = {"forward", "backward", "optimizer"};  // by StepPhase

struct Arguments {
  std::string config = "mega200M";
  std::vector<std::string> overrides;
  std::optional<int64_t> batch, seq_len, seed;
  std::optional<std::string> dtype;
  std::optional<double> peak_tflops;
  std::string device = "auto";
  int64_t warmup = 3;
  int64_t steps = 10;
  std::string json;
  ProfileOptions profile;
};

// The timed figures of one step, milliseconds.
struct StepTimes {
  double total = 0;
  double phase[3] = {0, 0, 0};  // by StepPhase
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// A token stream of four steps' worth of windows, uniform over the vocabulary: the data loader cuts it
// into batches exactly as it cuts a token shard, in a new order every epoch.
DataLoader random_token_loader(const RunConfig& c) {
  const int64_t windows = 4 * c.train.batch_size * c.train.grad_accum;
  Generator gen(static_cast<uint64_t>(c.train.seed));
  const std::vector<double> u = rand({windows * c.train.seq_len + 1}, DType::f64, Device::cpu(), gen).to_vector<double>();
  std::vector<uint32_t> tokens(u.size());
  for (size_t i = 0; i < u.size(); ++i)
    tokens[i] = static_cast<uint32_t>(std::min<double>(u[i] * c.model.vocab_size, c.model.vocab_size - 1));
  DataLoaderOptions o;
  o.batch_size = c.train.batch_size;
  o.seq_len = c.train.seq_len;
  o.vocab_size = c.model.vocab_size;
  o.seed = static_cast<uint64_t>(c.train.seed);
  return DataLoader(std::move(tokens), o, "random tokens");
}

// A time point at each phase boundary of one step.
using PhaseMarks = std::vector<std::pair<StepPhase, DeviceTimePoint>>;

// Issues step `index`, marking its phases; nothing waits for the device (TrainingStep::run).
PhaseMarks marked_step(TrainingStep& step, int64_t index, const BatchSource& batches, const Device& device) {
  PhaseMarks marks;
  step.run(index, batches, [&](StepPhase phase) { marks.emplace_back(phase, DeviceTimePoint(device)); });
  return marks;
}

// The times between a step's marks, read once the device has passed them.
StepTimes step_times(const PhaseMarks& marks) {
  StepTimes t;
  t.total = marks.back().second.ms_since(marks.front().second);
  for (size_t k = 0; k + 1 < marks.size(); ++k)
    t.phase[static_cast<int>(marks[k].first)] += marks[k + 1].second.ms_since(marks[k].second);
  return t;
}

std::string with_commas(double value) {
  std::string digits = std::to_string(static_cast<long long>(value + 0.5));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

int run(const Arguments& a) {
  RunConfig c = RunConfig::load(a.config);
  for (const std::string& assignment : a.overrides) c.set(assignment);
  if (a.batch) c.train.batch_size = *a.batch;
  if (a.seq_len) c.train.seq_len = *a.seq_len;
  if (a.seed) c.train.seed = *a.seed;
  if (a.dtype) c.train.dtype = *a.dtype;
  if (a.peak_tflops) c.train.peak_tflops = *a.peak_tflops;
  c.validate();
  report_ignored_keys("bench_train", c.ignored_keys);
  MGL_CHECK(c.parallel.data * c.parallel.chunk * c.parallel.tensor == 1,
            "bench_train times one process on one device: set parallel.data, parallel.chunk and parallel.tensor to 1");
  const Device device = resolve_device(a.device);
  std::optional<KernelProfiler> profiler;
  if (a.profile.enabled) profiler.emplace(device);  // refuses a CPU run before the model is built

  TrainingStep step(c, dist::ParallelState::single_process(device));
  DataLoader loader = random_token_loader(c);
  const BatchSource batches = [&loader] { return loader.next(); };
  const DType dtype = step.model().compute_dtype();
  reset_peak_memory(device);
  for (int64_t i = 0; i < a.warmup; ++i) step.run(i, batches);
  step.read_results();  // a non-finite step is an error here, as in train
  // The timed steps run back to back as in train, the host reading nothing until the last one is issued.
  std::vector<PhaseMarks> marks;
  for (int64_t i = 0; i < a.steps; ++i) marks.push_back(marked_step(step, a.warmup + i, batches, device));
  step.read_results();
  std::vector<StepTimes> times;
  for (const PhaseMarks& m : marks) times.push_back(step_times(m));
  const double peak_gib = static_cast<double>(memory_stats(device).peak_bytes) / kGiB;

  std::vector<double> totals;
  for (const StepTimes& t : times) totals.push_back(t.total);
  const double step_ms = median(totals);
  const double min_ms = *std::min_element(totals.begin(), totals.end());
  const double max_ms = *std::max_element(totals.begin(), totals.end());
  double phase_ms[3];
  for (int p = 0; p < 3; ++p) {
    std::vector<double> values;
    for (const StepTimes& t : times) values.push_back(t.phase[p]);
    phase_ms[p] = median(values);
  }
  const int64_t tokens_per_step = c.train.batch_size * c.train.seq_len * c.train.grad_accum;
  const double tokens_per_s = static_cast<double>(tokens_per_step) / (step_ms * 1e-3);
  const double flops_per_token = nn::megalodon_flops_per_token(c.model, c.train.seq_len).total();
  const double peak_tflops = peak_tflops_per_device(c.train.peak_tflops, device, dtype);
  const int64_t parameters = c.model.parameter_count();

  std::printf("bench_train: %s, %.1fM parameters, %s on %s; %lld x %lld%s = %s tokens per step; median of %lld steps "
              "after %lld warm-up\n",
              c.name.c_str(), static_cast<double>(parameters) * 1e-6, dtype_name(dtype), device.str().c_str(),
              static_cast<long long>(c.train.batch_size), static_cast<long long>(c.train.seq_len),
              c.train.grad_accum > 1 ? (" x " + std::to_string(c.train.grad_accum) + " micro-batches").c_str() : "",
              with_commas(static_cast<double>(tokens_per_step)).c_str(), static_cast<long long>(a.steps),
              static_cast<long long>(a.warmup));
  char mfu_text[64] = "—";
  if (peak_tflops > 0)
    std::snprintf(mfu_text, sizeof(mfu_text), "%.1f%% of %g", 100.0 * flops_per_token * tokens_per_s / (peak_tflops * 1e12),
                  peak_tflops);
  std::printf("| tokens/s | step ms (median / min / max) | GFLOP/token | MFU (of TFLOP/s) | peak GiB | forward ms | "
              "backward ms | optimizer ms |\n|---|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %.2f / %.2f / %.2f | %.3f | %s | %.2f | %.2f | %.2f | %.2f |\n", with_commas(tokens_per_s).c_str(),
              step_ms, min_ms, max_ms, flops_per_token * 1e-9, mfu_text, peak_gib, phase_ms[0], phase_ms[1], phase_ms[2]);

  if (!a.json.empty()) {
    json phases;
    for (int p = 0; p < 3; ++p) phases[kPhaseNames[p]] = phase_ms[p];
    const json peak = peak_tflops > 0 ? json(peak_tflops) : json(nullptr);
    const json mfu = peak_tflops > 0 ? json(flops_per_token * tokens_per_s / (peak_tflops * 1e12)) : json(nullptr);
    const json out{{"implementation", "megalodon.cpp"},
                   {"config", c.name},
                   {"device", device.str()},
                   {"dtype", dtype_name(dtype)},
                   {"batch", c.train.batch_size},
                   {"seq_len", c.train.seq_len},
                   {"grad_accum", c.train.grad_accum},
                   {"tokens_per_step", tokens_per_step},
                   {"warmup", a.warmup},
                   {"steps", a.steps},
                   {"parameters", parameters},
                   {"tokens_per_s", tokens_per_s},
                   {"step_ms", {{"median", step_ms}, {"min", min_ms}, {"max", max_ms}}},
                   {"phase_ms", phases},
                   {"flops_per_token", flops_per_token},
                   {"peak_tflops", peak},
                   {"mfu", mfu},
                   {"peak_memory_gib", peak_gib}};
    write_file_atomically(a.json, out.dump(2) + "\n");
  }

  if (profiler) {
    profiler->resume();
    for (int64_t i = 0; i < a.profile.steps; ++i) step.run(a.warmup + a.steps + i, batches);
    step.read_results();
    profiler->pause();
    std::printf("\n");
    report_profile(profiler->summary(a.profile.steps), a.profile, stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_train: the speed of one training step (forward, backward, clipping, AdamW) on random tokens"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  Arguments a;
  add_run_config_options(app, a.config, a.overrides);
  app.add_option("--batch", a.batch, "sequences per step (train.batch_size)")->check(integer_in(1, kMaxSize));
  app.add_option("--seq-len", a.seq_len, "tokens per sequence (train.seq_len)")->check(integer_in(1, kMaxSize));
  app.add_option("--dtype", a.dtype, "compute dtype (train.dtype)")->check(CLI::IsMember({"auto", "f32", "bf16"}));
  app.add_option("--device", a.device, "auto, cpu, cuda or cuda:N");
  app.add_option("--seed", a.seed, "seed of the weights and the tokens (train.seed)")->check(integer_in(0, INT64_MAX));
  app.add_option("--warmup", a.warmup, "untimed steps first")->check(integer_in(0, kMaxCount));
  app.add_option("--steps", a.steps, "timed steps (the median is reported)")->check(integer_in(1, kMaxCount));
  app.add_option("--peak-tflops", a.peak_tflops, "the device's peak for MFU (train.peak_tflops; default 790 for bf16 on CUDA)")
      ->check(real_in(RunConfig::range_of("train.peak_tflops").value()));
  app.add_option("--json", a.json, "also write the figures to this JSON file");
  add_profile_options(app, a.profile, "--profile-steps more steps after the timed ones");
  if (auto status = parse_command_line(app, argc, argv, "bench_train")) return *status;
  try {
    return run(a);
  } catch (const std::exception& e) {
    return report_fatal_error("bench_train: error: ", e.what(), true);
  }
}

// train: trains a MEGALODON model on one CPU or GPU, or on many under mpirun (docs/parallelism.md):
//   mpirun -np 4 build/bin/train --config tiny --set parallel.data=2 --set parallel.chunk=2
//
//   train [--config NAME|FILE] [--data PATH] [--out DIR] [--steps N] [--resume] [--init-from WEIGHTS]
//         [--device auto|cpu|cuda] [--seed N] [--set section.key=value]... [--print-config]
//         [--profile [--profile-after N] [--profile-steps K] [--profile-top T] [--profile-json FILE]]
//
// The config (apps/lib/run_config.h) comes from configs/<NAME>.json or a file, then --set overrides and
// the per-key flags (--steps, --seed). --data names a prepared directory (build/bin/prepare), or text
// files / a directory of text to prepare into <out>/data on first use; without --data the default corpus
// (the GCIDE dictionary from Debian's dict-gcide) is prepared once into data/. The loop, checkpoints and
// metrics are in apps/lib/trainer.h, --profile's kernel table in apps/lib/kernel_profiler.h; the run
// folder is locked for the run's life (apps/lib/run_lock.h: a second train on it is refused). Errors:
// one line on stderr and exit status 1, a bad command line 2 (under mpirun the error ends every rank,
// apps/lib/app_errors.h; docs/reliability.md); an interruption by SIGINT/SIGTERM saves a checkpoint and
// exits with 130.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "apps/lib/app_errors.h"
#include "apps/lib/command_line.h"
#include "apps/lib/prepare_data.h"
#include "apps/lib/run_config.h"
#include "apps/lib/run_lock.h"
#include "apps/lib/trainer.h"
#include "core/allocator.h"
#include "dist/mpi_world.h"
#include "dist/parallel_state.h"

using namespace mgl;
using namespace mgl::apps;
namespace fs = std::filesystem;

namespace {

// The default corpus (apps/lib/prepare_data.h): GCIDE, prepared once into data/gcide-<tokenizer>.
constexpr const char* kDefaultCorpusName = "gcide";

struct Arguments {
  std::string config = "tiny";
  std::string data;
  std::string out;
  std::string device = "auto";
  std::optional<int64_t> steps, seed;
  std::vector<std::string> overrides;
  std::string init_from;
  bool resume = false;
  bool print_config = false;
  ProfileOptions profile;
};

// The pieces of the SentencePiece model train prepares: data.vocab_size, or the model's vocabulary.
int64_t sentencepiece_pieces(const RunConfig& c) { return c.data.vocab_size > 0 ? c.data.vocab_size : c.model.vocab_size; }

PrepareOptions prepare_options(const RunConfig& c, std::vector<std::string> inputs, std::string out) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out = std::move(out);
  o.tokenizer = c.data.tokenizer;
  if (c.data.tokenizer == "sentencepiece")
    o.vocab_size = static_cast<int>(sentencepiece_pieces(c));
  o.val_fraction = c.data.val_fraction;
  o.seq_len = c.train.seq_len;
  return o;
}

// A prepared directory for --data (see the header comment), preparing it when needed.
PreparedData resolve_data(const Arguments& a, const RunConfig& c, const std::string& out) {
  if (a.data.empty()) {
    std::string name = std::string(kDefaultCorpusName) + "-" + c.data.tokenizer;
    if (c.data.tokenizer == "sentencepiece") name += std::to_string(sentencepiece_pieces(c));
    const fs::path directory = fs::path("data") / name;
    if (fs::exists(directory / "meta.json")) return read_prepared_data(directory.string());
    const std::string corpus = default_corpus_path();
    MGL_CHECK(fs::exists(corpus), "the default corpus ", corpus,
              " is missing: install Debian's dict-gcide package (tools/install_deps.sh does), or pass --data");
    std::printf("train: preparing the default corpus (%s) into %s\n", corpus.c_str(), directory.c_str());
    return prepare_data(prepare_options(c, {corpus}, directory.string()));
  }
  MGL_CHECK(fs::exists(a.data), "--data '", a.data, "' does not exist");
  if (fs::is_directory(a.data) && fs::exists(fs::path(a.data) / "meta.json")) return read_prepared_data(a.data);
  std::vector<std::string> inputs;
  if (fs::is_directory(a.data)) {
    for (const auto& entry : fs::directory_iterator(a.data))
      if (entry.is_regular_file()) inputs.push_back(entry.path().string());
    std::sort(inputs.begin(), inputs.end());
    MGL_CHECK(!inputs.empty(), "--data '", a.data, "' holds no files");
  } else {
    inputs.push_back(a.data);
  }
  const fs::path directory = fs::path(out) / "data";
  if (fs::exists(directory / "meta.json")) return read_prepared_data(directory.string());
  return prepare_data(prepare_options(c, inputs, directory.string()));
}

// The grid of the run: parallel.* sizes over the processes mpirun started (a plain run: one).
std::shared_ptr<dist::ParallelState> make_parallel_state(const RunConfig& c, const std::string& device) {
  dist::ParallelOptions p;
  p.sizes = {c.parallel.data, c.parallel.chunk, c.parallel.tensor};
  p.backend = c.parallel.backend;
  p.timeout_s = c.parallel.timeout_s;
  return dist::ParallelState::create(p, device);
}

// The config that --config, --set, --steps and --seed resolve to, checked: the same on every rank.
RunConfig resolve_config(const Arguments& a) {
  RunConfig config = RunConfig::load(a.config);
  for (const std::string& assignment : a.overrides) config.set(assignment);
  if (a.steps) config.train.steps = *a.steps;
  if (a.seed) config.train.seed = *a.seed;
  config.validate();
  return config;
}

int run(const Arguments& a, const RunConfig& config, bool& is_rank0) {
  if (is_rank0) report_ignored_keys("train", config.ignored_keys);
  if (a.print_config) {  // before the grid: no mpirun needed to see what a parallel config resolves to
    if (is_rank0) std::printf("train: resolved config\n%s\n", config.to_json().c_str());
    return 0;
  }
  const std::shared_ptr<dist::ParallelState> parallel = make_parallel_state(config, a.device);
  is_rank0 = parallel->is_logging_rank();
  // Every rank must train the same thing with the same code: a mismatch is an error, not a wrong result.
  parallel->require_same_everywhere("binary", dist::build_id());
  parallel->require_same_everywhere("resolved config", config.to_json());
  auto say = [&](const std::string& text) {
    if (is_rank0) std::printf("%s\n", text.c_str());
  };
  say("train: resolved config\n" + config.to_json());

  if (a.profile.enabled && is_rank0) KernelProfiler::require_device(parallel->device());  // before any work
  TrainerOptions options;
  options.out = a.out.empty() ? (fs::path("runs") / config.name).string() : a.out;
  // One run per folder, for the run's whole life (apps/lib/run_lock.h): rank 0 locks, and a refusal
  // ends every rank (the others wait for rank 0 at the barrier below, apps/lib/app_errors.h).
  std::optional<RunLock> lock;
  if (is_rank0) lock.emplace(options.out, "run");
  // Rank 0 prepares the data (when it must be); the others read what it wrote.
  if (is_rank0) options.data = resolve_data(a, config, options.out);
  parallel->barrier_after_long_work();
  if (!is_rank0) options.data = resolve_data(a, config, options.out);
  options.parallel = parallel;
  options.device = parallel->device();
  options.resume = a.resume;
  options.init_from = a.init_from;
  options.profile = a.profile;
  options.config = config;
  char line[400];
  std::snprintf(line, sizeof(line), "train: %lld parameters, data %s (%lld train / %lld val tokens, %s), device %s, run %s",
                static_cast<long long>(config.model.parameter_count()), options.data.directory.c_str(),
                static_cast<long long>(options.data.train_tokens), static_cast<long long>(options.data.val_tokens),
                options.data.tokenizer_identity.c_str(), options.device.str().c_str(), options.out.c_str());
  say(line);
  const std::string grid = parallel->describe_grid();
  if (parallel->distributed())
    say("train: grid " + parallel->sizes().str() + " over " + std::to_string(parallel->world_size()) + " processes\n" + grid);
  Trainer trainer(options);
  const TrainingSummary s = trainer.run();
  std::snprintf(line, sizeof(line), "train: steps %lld..%lld, last loss %.4f, %.0f tokens/s",
                static_cast<long long>(s.first_step), static_cast<long long>(s.last_step), s.last_loss, s.tokens_per_s);
  std::string summary = line;
  if (parallel->distributed()) {
    std::snprintf(line, sizeof(line), " (%.0f per device)", s.tokens_per_s / parallel->world_size());
    summary += line;
  }
  if (options.device.is_cuda()) {
    std::snprintf(line, sizeof(line), ", peak device memory %.2f GiB", s.peak_device_bytes / 1073741824.0);
    summary += line;
  }
  say(summary);
  return s.interrupted ? kExitInterrupted : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"train: train a MEGALODON model on one CPU or GPU"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  Arguments a;
  add_run_config_options(app, a.config, a.overrides);
  app.add_option("--data", a.data, "prepared data directory, or text files/directory to prepare (default: GCIDE)");
  app.add_option("--out", a.out, "run directory (default runs/<config name>)");
  app.add_option("--steps", a.steps, "optimizer steps (train.steps)")->check(integer_in(1, kMaxCount));
  app.add_option("--seed", a.seed, "seed (train.seed)")->check(integer_in(0, INT64_MAX));
  app.add_option("--device", a.device, "auto, cpu, cuda or cuda:N");
  app.add_flag("--resume", a.resume, "continue from the newest valid checkpoint in <out>/checkpoints");
  app.add_option("--init-from", a.init_from,
                 "start a new run from these weights (checkpoint, run or export directory, safetensors, HDF5 weights)");
  app.add_flag("--print-config", a.print_config, "print the resolved config and exit");
  CLI::Option* profile = add_profile_options(app, a.profile, "a window of --profile-steps steps after --profile-after");
  app.add_option("--profile-after", a.profile.after, "steps this process runs before --profile records")
      ->check(integer_in(0, kMaxCount))
      ->needs(profile);
  // --help shows the keys with the values in force: those of --config and --set (parsed before help is printed).
  app.footer([&a] {
    std::string text = "Configs:";
    for (const std::string& n : RunConfig::known_config_names()) text += " " + n;
    text += "\n\n";
    try {
      RunConfig shown = RunConfig::load(a.config);
      for (const std::string& assignment : a.overrides) shown.set(assignment);
      return text + RunConfig::describe_keys(shown);
    } catch (const std::exception& e) {
      return text + "(config '" + a.config + "' cannot be shown: " + e.what() + ")\n" + RunConfig::describe_keys(RunConfig());
    }
  });
  if (auto status = parse_command_line(app, argc, argv, "train")) return *status;
  bool is_rank0 = dist::launcher_rank() == 0;
  // A bad config fails alike on every rank: the ranks agree that rank 0 reports it (apps/lib/app_errors.h).
  std::optional<RunConfig> config;
  if (auto status = settle_setup("train: error: ", is_rank0, [&] { config = resolve_config(a); })) return *status;
  try {
    return run(a, *config, is_rank0);
  } catch (const std::exception& e) {
    const std::string message = e.what();
    const bool out_of_memory = message.find("out of memory") != std::string::npos;
    return report_fatal_error(
        "train: error: ",
        message + (out_of_memory ? " (lower train.batch_size or train.seq_len, or set model.activation_checkpointing=true)" : ""),
        is_rank0);
  }
}

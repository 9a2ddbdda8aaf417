#include "apps/lib/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <thread>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/lib/files.h"
#include "apps/lib/scoring.h"
#include "apps/lib/token_shards.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "nn/flops.h"
#include "nn/weights.h"
#include "ops/ops.h"

namespace mgl::apps {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

// Settings that may change between an interrupted run and its resumption (they do not change the math).
// The parallel.* keys may change too: a checkpoint holds whole tensors and resumes under any grid.
const std::vector<std::string> kResumableKeys = {
    "name", "train.steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.peak_tflops",
    "eval.every", "eval.batches", "eval.long_context_tokens", "parallel.data", "parallel.chunk",
    "parallel.tensor", "parallel.zero", "parallel.bucket_mb", "parallel.timeout_s", "parallel.backend"};

// The data order gets its own Philox key, so that its numbers are not the initialisation's.
constexpr uint64_t kDataSeedSalt = 0x9E3779B97F4A7C15ull;

volatile std::sig_atomic_t g_stop_requested = 0;
void request_stop(int) { g_stop_requested = 1; }

// Installs SIGINT/SIGTERM handlers for the lifetime of the object: the loop finishes its step, saves
// a checkpoint and returns, instead of dying mid-step.
class StopOnSignal {
 public:
  StopOnSignal() {
    g_stop_requested = 0;
    previous_int_ = std::signal(SIGINT, request_stop);
    previous_term_ = std::signal(SIGTERM, request_stop);
  }
  ~StopOnSignal() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

// The tokenizer's model file as bytes (empty for the byte tokenizer): checkpoints carry it, so that
// generate needs nothing but the checkpoint. Read as a file, so no SentencePiece library is needed here.
std::string read_tokenizer_model(const PreparedData& data) {
  const std::string path = data.tokenizer_model_path();
  return path.empty() ? std::string() : read_file(path, "the tokenizer model");
}

// A test-only stall (MGL_TEST_STALL="rank:step"): that rank stops taking part at that step, as a hung
// process would, so the tests can check that the others end the job within parallel.timeout_s.
void stall_if_asked(int rank, int64_t step) {
  const char* spec = std::getenv("MGL_TEST_STALL");
  if (!spec) return;
  int stall_rank = -1;
  long long stall_step = -1;
  if (std::sscanf(spec, "%d:%lld", &stall_rank, &stall_step) == 2 && stall_rank == rank && stall_step == step)
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// What turns a step's time into tokens/s and MFU.
struct StepScale {
  int64_t tokens = 0;     // of one step, all ranks
  double devices = 1;
  double flops = 0;       // the model FLOPs of one step (nn/flops.h)
  double peak_flops = 0;  // of all devices, per second; 0: unknown (no MFU)
};

StepScale step_scale(const RunConfig& c, const dist::ParallelState& parallel, DType compute) {
  StepScale s;
  s.tokens = c.train.batch_size * c.train.seq_len * c.train.grad_accum;
  s.devices = static_cast<double>(parallel.world_size());
  // MFU = model FLOPs per second / the peak of all devices; the FLOPs are the model's, not what the kernels
  // actually execute (activation checkpointing's recomputation does not count).
  s.flops = nn::megalodon_flops_per_token(c.model, c.train.seq_len).total() * static_cast<double>(s.tokens);
  s.peak_flops = peak_tflops_per_device(c.train.peak_tflops, parallel.device(), compute) * 1e12 * s.devices;
  return s;
}

}  // namespace

Device resolve_device(const std::string& name) {
  if (name == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  const Device device = Device::parse(name);
  MGL_CHECK(device.is_cpu() || cuda_available(), "--device ", name, ": no usable CUDA device here");
  return device;
}

Trainer::Trainer(TrainerOptions options)
    : options_(std::move(options)),
      parallel_(options_.parallel ? options_.parallel : dist::ParallelState::single_process(options_.device)) {
  const RunConfig& c = options_.config;
  c.validate();
  options_.device = parallel_->device();
  if (!parallel_->is_logging_rank()) options_.console = nullptr;
  if (options_.profile.enabled && parallel_->is_logging_rank())
    profiler_ = std::make_unique<KernelProfiler>(options_.device);
  const PreparedData& data = options_.data;
  MGL_CHECK(data.vocab_size <= c.model.vocab_size, "the data's tokenizer (", data.tokenizer_identity, ") has ",
            data.vocab_size, " ids but model.vocab_size is ", c.model.vocab_size,
            ": set model.vocab_size >= ", data.vocab_size);
  if (parallel_->is_logging_rank()) fs::create_directories(options_.out);
  checkpoints_ = std::make_unique<nn::CheckpointDirectory>((fs::path(options_.out) / "checkpoints").string(),
                                                           c.train.keep_checkpoints);
  std::optional<std::string> resume_from;
  if (options_.resume) {
    std::vector<std::string> skipped;
    resume_from = checkpoints_->newest_valid(&skipped);
    for (const std::string& reason : skipped) log("skipping an unusable checkpoint: " + reason);
    // A directory without checkpoints starts a run; one whose checkpoints are all unusable is an error
    // (a restart would overwrite the run's metrics).
    if (!resume_from && !skipped.empty()) {
      std::string reasons;
      for (const std::string& reason : skipped) reasons += "; " + reason;
      MGL_FAIL("--resume: no usable checkpoint in ", options_.out, " (", skipped.size(), " unusable", reasons, ")");
    }
    if (!resume_from) log("--resume: no checkpoint in " + options_.out + ", starting from step 0");
  } else {
    MGL_CHECK(checkpoints_->list().empty(), "the run directory '", options_.out,
              "' already holds checkpoints: pass --resume to continue it, or choose another --out");
  }

  step_ = std::make_unique<TrainingStep>(c, parallel_);
  if (!options_.init_from.empty() && !resume_from) {
    nn::Megalodon& model = step_->model();
    nn::load_weights(nn::read_weights(options_.init_from), model, options_.init_from, model.tensor_parallel());
    log("initialized the parameters from " + options_.init_from);
  }

  // Data-parallel rank d draws its B / DP windows of every step (apps/lib/data_loader.h); the chunk
  // ranks of one d draw the same windows and keep their own piece of each.
  DataLoaderOptions loader;
  const int64_t data_ranks = parallel_->sizes().data;
  loader.batch_size = c.train.batch_size / data_ranks;
  loader.rank = parallel_->coordinates().data;
  loader.world_size = data_ranks;
  loader.seq_len = c.train.seq_len;
  loader.vocab_size = c.model.vocab_size;
  loader.seed = static_cast<uint64_t>(c.train.seed) ^ kDataSeedSalt;
  train_loader_ = std::make_unique<DataLoader>(DataLoader::from_shard(data.train_path(), loader));
  val_tokens_ = read_token_shard(data.val_path()).tokens;
  MGL_CHECK(static_cast<int64_t>(val_tokens_.size()) > c.train.seq_len, "the validation split '", data.val_path(),
            "' has ", val_tokens_.size(), " tokens: fewer than one sequence of ", c.train.seq_len + 1);
  for (size_t i = 0; i < val_tokens_.size(); ++i)
    MGL_CHECK(val_tokens_[i] < static_cast<uint64_t>(c.model.vocab_size), "token id ", val_tokens_[i],
              " at position ", i, " of '", data.val_path(), "' is outside the vocabulary (", c.model.vocab_size, ")");

  state_.rng_seed = default_generator().seed;
  state_.rng_offset = default_generator().offset;
  state_.tokenizer = data.tokenizer_identity;
  state_.tokenizer_model = read_tokenizer_model(data);
  state_.run_config = c.to_json();
  if (options_.resume) parallel_->require_same_everywhere("checkpoint to resume from", resume_from.value_or("(none)"));
  if (resume_from) {
    const nn::TrainingState stored = step_->load_checkpoint(*resume_from);
    const std::string difference = first_run_config_difference(stored.run_config, state_.run_config, kResumableKeys);
    MGL_CHECK(difference.empty(), "cannot resume from '", *resume_from, "': its run config differs in '", difference,
              "' (only ", kResumableKeys.size(), " bookkeeping keys such as train.steps may change)");
    MGL_CHECK(stored.tokenizer == data.tokenizer_identity, "cannot resume from '", *resume_from,
              "': it was trained with tokenizer ", stored.tokenizer, ", the data uses ", data.tokenizer_identity);
    state_.step = stored.step;
    state_.data_position = stored.data_position;
    default_generator().seed = stored.rng_seed;
    default_generator().offset = stored.rng_offset;
    train_loader_->set_step(stored.data_position);
    log("resumed from " + *resume_from + " at step " + std::to_string(stored.step));
  }
  if (parallel_->is_logging_rank()) {
    write_file_atomically((fs::path(options_.out) / "config.json").string(), state_.run_config + "\n");
    metrics_ = std::make_unique<MetricsLog>((fs::path(options_.out) / "metrics.jsonl").string(), state_.step);
  }
}

bool Trainer::stop_requested() const {
  if (!parallel_->distributed()) return g_stop_requested != 0;
  // A signal may reach the ranks between two of their checks: they agree, so all stop after the same step.
  const Tensor flag = Tensor::from_vector(std::vector<int32_t>{g_stop_requested ? 1 : 0}, {1});
  parallel_->world().on(Device::cpu()).all_reduce(flag, dist::ReduceOp::max)->wait();
  return flag.item() != 0;
}

void Trainer::write_metrics(const std::string& json_object) const {
  if (metrics_) metrics_->write(json_object);
}

double Trainer::sum_over_data_ranks(double value) const {
  return parallel_->distributed() ? parallel_->data_chunk().sum(value) : value;
}

void Trainer::log(const std::string& message) const {
  if (options_.console) std::fprintf(options_.console, "train: %s\n", message.c_str());
}

double Trainer::accumulate_gradients() {
  return sum_over_data_ranks(step_->accumulate_gradients([this] { return train_loader_->next(); }).item());
}

void Trainer::train_step() {
  parallel_->monitor().set_step(state_.step + 1);
  stall_if_asked(parallel_->world_rank(), state_.step + 1);
  const ProfileOptions& profile = options_.profile;
  const bool profiled = profiler_ && steps_run_ >= profile.after && steps_run_ < profile.after + profile.steps;
  if (profiled) profiler_->resume();
  DeviceTimePoint start(options_.device);
  step_->run(state_.step, [this] { return train_loader_->next(); });
  DeviceTimePoint end(options_.device);
  if (profiled) profiler_->pause();
  issued_.push_back({std::move(start), std::move(end), Clock::now(),
                     options_.device.is_cuda() ? memory_stats(options_.device) : MemoryStats{}});
  steps_run_ += 1;
  state_.step += 1;
  state_.data_position = train_loader_->step();
}

void Trainer::settle() {
  const std::vector<StepResult> results = step_->read_results();
  const std::vector<IssuedStep> issued = std::move(issued_);
  issued_.clear();
  const StepScale scale = step_scale(options_.config, *parallel_, compute_dtype());
  for (size_t i = 0; i < results.size(); ++i) {
    const StepResult& result = results[i];
    const IssuedStep& step = issued[i];
    // The device's time from the step's start to its end (the host clock on the CPU).
    const double step_seconds = step.end.ms_since(step.start) * 1e-3;
    json line{{"step", result.step},
              {"loss", result.loss},
              {"lr", result.lr},
              {"grad_norm", result.grad_norm},
              {"tokens", result.step * scale.tokens},
              {"tokens_per_s", scale.tokens / step_seconds},
              {"tokens_per_s_per_device", scale.tokens / step_seconds / scale.devices},
              {"step_ms", step_seconds * 1e3},
              {"elapsed_s", std::chrono::duration<double>(step.issued - started_).count()}};
    if (scale.peak_flops > 0) line["mfu"] = scale.flops / step_seconds / scale.peak_flops;
    // This (the logging) rank's device when the step was issued: tensors held, and the high-water mark.
    if (options_.device.is_cuda()) {
      line["device_mem_gib"] = static_cast<double>(step.memory.current_bytes) / kGiB;
      line["device_peak_gib"] = static_cast<double>(step.memory.peak_bytes) / kGiB;
    }
    write_metrics(line.dump());
  }
  if (!results.empty()) latest_ = results.back();
}

bool Trainer::profile_window_closed() const {
  const int64_t profiled = steps_run_ - options_.profile.after;  // steps of the window run so far
  const bool last_step = state_.step == options_.config.train.steps;
  return profiler_ && profiled >= 1 && (profiled == options_.profile.steps || (last_step && profiled < options_.profile.steps));
}

void Trainer::report_kernel_profile() const {
  const ProfileOptions& profile = options_.profile;
  const int64_t steps = std::min(steps_run_ - profile.after, profile.steps);
  log("kernels of steps " + std::to_string(state_.step - steps + 1) + ".." + std::to_string(state_.step) +
      (profile.json.empty() ? "" : " (also in " + profile.json + ")"));
  report_profile(profiler_->summary(steps), profile, options_.console);
}

ValidationResult Trainer::validate() {
  const TrainSettings& t = options_.config.train;
  NoGradGuard no_grad;
  nn::Megalodon& model = step_->model();
  nn::EvalModeGuard eval_mode(model);
  // Fixed windows from the start of the validation split: window k is tokens [k L, k L + L].
  const int64_t L = t.seq_len;
  const int64_t available = (static_cast<int64_t>(val_tokens_.size()) - 1) / L;
  const int64_t windows = std::min(available, options_.config.eval.batches * t.batch_size);
  // Under data and chunk parallelism the windows are dealt out over the data x chunk ranks (window w
  // to rank w mod size), each scored whole on one rank, and the sums of their losses added up.
  const dist::ProcessGroup& group = parallel_->data_chunk();
  std::vector<int64_t> mine;
  for (int64_t w = group.rank(); w < windows; w += group.size()) mine.push_back(w);
  const int64_t batch = t.batch_size / parallel_->sizes().data;  // a training micro-batch's sequences per rank
  double nll_sum = 0;
  for (size_t first = 0; first < mine.size(); first += static_cast<size_t>(batch)) {
    const int64_t rows = std::min<int64_t>(batch, static_cast<int64_t>(mine.size() - first));
    std::vector<int64_t> inputs(rows * L), targets(rows * L);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < L; ++i) {
        inputs[r * L + i] = val_tokens_[mine[first + r] * L + i];
        targets[r * L + i] = val_tokens_[mine[first + r] * L + i + 1];
      }
    // The targets stay on the host, where the loss reads them (nn/megalodon.h forward_loss).
    const double loss = model.forward_loss(to(Tensor::from_vector(inputs, {rows, L}), options_.device),
                                           Tensor::from_vector(targets, {rows, L}))
                            .item();
    nll_sum += loss * static_cast<double>(rows * L);
  }
  nll_sum = sum_over_data_ranks(nll_sum);
  ValidationResult r;
  r.tokens = windows * L;
  r.loss = nll_sum / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  r.bits_per_byte = r.loss / (std::log(2.0) * bytes_per_token());
  return r;
}

std::vector<LongContextPoint> Trainer::evaluate_long_context(nn::Megalodon& model) {
  // The paper's Figure 5 measurement: the same target tokens scored with longer and longer contexts.
  // The stream is the first N tokens of the held-out split (N a power-of-two multiple of the target);
  // the target is its last T = N / 32 tokens; context length c = 2T, 4T, ..., N scores tokens [N - c, N)
  // as one stream (constant memory, apps/lib/scoring.h) and keeps the loss of its last T positions.
  const int64_t requested = std::min<int64_t>(options_.config.eval.long_context_tokens, val_tokens_.size());
  const int64_t target = std::max<int64_t>(1, requested / 32);
  int64_t stream = target;
  while (stream * 2 <= requested) stream *= 2;
  MGL_CHECK(requested >= 64, "eval.long_context_tokens (", requested, " usable) is too short for a curve");
  ScoringOptions scoring;
  scoring.buckets = "linear";
  scoring.bucket_width = target;
  std::vector<LongContextPoint> curve;
  {
    nn::EvalModeGuard eval_mode(model);
    for (int64_t context = 2 * target; context <= stream; context *= 2) {
      const std::vector<int32_t> tokens(val_tokens_.begin() + (stream - context), val_tokens_.begin() + stream);
      const ScoringResult result = score_tokens(model, tokens, scoring);
      const PositionBucket& last = result.curve.back();
      curve.push_back({context, last.tokens, last.mean_nll()});
    }
  }

  std::string table = "context\ttarget_tokens\tmean_nll\tperplexity\n";
  log("long-context evaluation (" + options_.config.model.timestep_norm_mode + " TimestepNorm): the last " +
      std::to_string(target) + " of " + std::to_string(stream) + " held-out tokens with growing context");
  for (const LongContextPoint& p : curve) {
    char line[160];
    std::snprintf(line, sizeof(line), "%lld\t%lld\t%.6f\t%.4f\n", static_cast<long long>(p.context),
                  static_cast<long long>(p.target_tokens), p.mean_nll, std::exp(p.mean_nll));
    table += line;
    std::snprintf(line, sizeof(line), "  context %7lld: ppl %.3f", static_cast<long long>(p.context), std::exp(p.mean_nll));
    log(line);
    write_metrics(json{{"step", state_.step}, {"long_context", p.context}, {"long_context_nll", p.mean_nll}}.dump());
  }
  write_file_atomically((fs::path(options_.out) / "long_context.tsv").string(), table);
  return curve;
}

double Trainer::bytes_per_token() const {
  const PreparedData& d = options_.data;
  return d.val_tokens > 0 && d.val_bytes > 0 ? static_cast<double>(d.val_bytes) / static_cast<double>(d.val_tokens)
                                             : 1.0;
}

void Trainer::save_checkpoint() {
  settle();  // a step that failed must not be saved
  state_.rng_seed = default_generator().seed;
  state_.rng_offset = default_generator().offset;
  // One file with whole tensors, written by rank 0 (atomically); ZeRO-1 gathers the moments first, and
  // the tensor group of rank 0 (the ranks with data and chunk coordinate 0) gathers the shards to it.
  const bool gathers = parallel_->data_chunk().rank() == 0;
  step_->save_checkpoint(*checkpoints_, state_, gathers);
  // No rank runs ahead of a checkpoint that is still being written.
  parallel_->barrier_after_long_work();
}

TrainingSummary Trainer::run() {
  const RunConfig& c = options_.config;
  StopOnSignal stop_on_signal;
  // Under mpirun stdout is a pipe to the launcher even when it looks like a terminal: one line per update.
  ProgressLine progress(options_.console ? options_.console : stdout, !parallel_->distributed());
  TrainingSummary summary;
  summary.first_step = state_.step;
  const bool on_cuda = options_.device.is_cuda();
  if (on_cuda) reset_peak_memory(options_.device);

  const StepScale scale = step_scale(c, *parallel_, compute_dtype());
  started_ = Clock::now();
  auto window_start = started_;
  int64_t window_steps = 0;
  auto validate_and_log = [&] {
    settle();
    const ValidationResult v = validate();
    write_metrics(json{{"step", state_.step},
                         {"val_loss", v.loss},
                         {"val_ppl", v.perplexity},
                         {"val_bpb", v.bits_per_byte},
                         {"val_tokens", v.tokens}}
                        .dump());
    if (options_.console) progress.finish();
    char line[160];
    std::snprintf(line, sizeof(line), "step %lld: val loss %.4f | ppl %.2f | %.3f bits/byte",
                  static_cast<long long>(state_.step), v.loss, v.perplexity, v.bits_per_byte);
    log(line);
    return v;
  };

  while (state_.step < c.train.steps && !stop_requested()) {
    // The step is issued without the host waiting for the device; its results are read (settle) only
    // when the step is logged, evaluated after or checkpointed, together with those of the steps before.
    train_step();
    window_steps += 1;
    if (profile_window_closed()) {
      if (options_.console) progress.finish();
      report_kernel_profile();
    }
    const bool last = state_.step == c.train.steps;
    const bool evaluates = c.eval.every > 0 && state_.step % c.eval.every == 0 && !last;
    const bool saves = state_.step % c.train.checkpoint_every == 0 && !last;
    if (state_.step % c.train.log_every == 0 || last) {
      settle();
      const double window_seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double tokens_per_s = window_steps * scale.tokens / window_seconds;
      const double eta = (c.train.steps - state_.step) * window_seconds / window_steps;
      char per_device[48] = "", mfu[32] = "", memory_text[48] = "";
      if (parallel_->distributed())
        std::snprintf(per_device, sizeof(per_device), " (%.0f per device)", tokens_per_s / scale.devices);
      if (scale.peak_flops > 0)
        std::snprintf(mfu, sizeof(mfu), " | MFU %.1f%%",
                      100.0 * scale.flops * window_steps / window_seconds / scale.peak_flops);
      if (on_cuda) {
        const MemoryStats memory = memory_stats(options_.device);
        std::snprintf(memory_text, sizeof(memory_text), " | mem %.2f/%.2f GiB",
                      static_cast<double>(memory.current_bytes) / kGiB, static_cast<double>(memory.peak_bytes) / kGiB);
      }
      char text[320];
      std::snprintf(text, sizeof(text),
                    "step %lld/%lld | loss %.4f | lr %.2e | grad %.3f | %.1f ms/step | %.0f tok/s%s%s%s | ETA %s",
                    static_cast<long long>(state_.step), static_cast<long long>(c.train.steps), latest_.loss,
                    latest_.lr, latest_.grad_norm, 1e3 * window_seconds / window_steps, tokens_per_s, per_device,
                    mfu, memory_text, format_duration(eta).c_str());
      if (options_.console) progress.update(text);
      window_start = Clock::now();
      window_steps = 0;
    }
    if (evaluates) validate_and_log();
    if (saves) save_checkpoint();
  }
  settle();
  if (options_.console) progress.finish();
  summary.interrupted = state_.step < c.train.steps;
  if (summary.interrupted) {
    save_checkpoint();
    log("interrupted: saved a checkpoint at step " + std::to_string(state_.step) + "; continue with --resume");
  } else if (state_.step > summary.first_step) {
    // Validation before the final checkpoint: a run killed in between repeats both, never logs twice.
    summary.validation = validate_and_log();
    save_checkpoint();
    // The curve streams one long text through one whole model: rank 0 alone (no rank waits for it),
    // after its tensor group has gathered a split model to it.
    if (c.eval.long_context_tokens > 0 && parallel_->data_chunk().rank() == 0) {
      const std::shared_ptr<nn::Megalodon> whole = nn::gather_whole_model(step_->shared_model());
      if (parallel_->is_logging_rank()) summary.long_context = evaluate_long_context(*whole);
    }
  } else {
    log("the run is already complete at step " + std::to_string(state_.step));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started_).count();
  summary.last_step = state_.step;
  summary.last_loss = latest_.loss;
  summary.tokens_per_s = (state_.step - summary.first_step) * scale.tokens / std::max(seconds, 1e-9);
  if (on_cuda) summary.peak_device_bytes = memory_stats(options_.device).peak_bytes;
  return summary;
}

}  // namespace mgl::apps

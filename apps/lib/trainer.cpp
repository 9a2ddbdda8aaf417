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
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "nn/chunk_parallel.h"
#include "nn/flops.h"
#include "nn/grad_clip.h"
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

DType training_dtype(const std::string& setting, const Device& device) {
  if (setting == "auto") return device.is_cuda() ? DType::bf16 : DType::f32;
  return dtype_from_name(setting);
}

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

// The dense bf16 rate measured on an H200 (docs/perf.md, "Model FLOPs and MFU"): the default peak of a
// bf16 run on CUDA. Other cases have no honest default (the CPU's rate depends on the machine and its BLAS,
// f32 on a GPU on whether TF32 is allowed), so they report MFU only when train.peak_tflops is set.
constexpr double kBf16CudaPeakTflops = 790.0;

double peak_tflops_per_device(double configured, const Device& device, DType compute) {
  if (configured > 0) return configured;
  return device.is_cuda() && compute == DType::bf16 ? kBf16CudaPeakTflops : 0.0;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

bool all_finite(const Tensor& t) {
  NoGradGuard no_grad;
  const Tensor x = cast(t, DType::f32);
  return std::isfinite(sum(mul(x, x)).item());
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
  const dist::GridSizes& grid = parallel_->sizes();
  MGL_CHECK(grid.data == c.parallel.data && grid.chunk == c.parallel.chunk && grid.tensor == c.parallel.tensor,
            "the process grid (", grid.str(), ") is not the config's (data ", c.parallel.data, " x chunk ",
            c.parallel.chunk, " x tensor ", c.parallel.tensor, ")");
  const PreparedData& data = options_.data;
  MGL_CHECK(data.vocab_size <= c.model.vocab_size, "the data's tokenizer (", data.tokenizer_identity, ") has ",
            data.vocab_size, " ids but model.vocab_size is ", c.model.vocab_size,
            ": set model.vocab_size >= ", data.vocab_size);
  MGL_CHECK(c.train.seq_len % c.model.chunk_size == 0 || c.train.seq_len < c.model.chunk_size,
            "train.seq_len (", c.train.seq_len, ") must be a multiple of model.chunk_size (", c.model.chunk_size,
            ") or shorter than one chunk");

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

  // Initialisation is the first use of the seeded default generator; dropout continues the same stream.
  // Under tensor parallelism every rank of a tensor group builds the whole model from the same seed and
  // keeps its pieces (nn/tensor_parallel.h), so the start does not depend on the grid.
  manual_seed(static_cast<uint64_t>(c.train.seed));
  model_ = std::make_shared<nn::Megalodon>(c.model, nn::InitOptions{}, nn::TensorParallel(parallel_->tensor()));
  model_->to(options_.device);
  model_->set_compute_dtype(training_dtype(c.train.dtype, options_.device));
  model_->train();
  parameters_ = model_->named_parameters();
  if (!options_.init_from.empty() && !resume_from) {
    nn::load_weights(nn::read_weights(options_.init_from), *model_, options_.init_from, model_->tensor_parallel());
    log("initialized the parameters from " + options_.init_from);
  }

  nn::AdamWOptions& adamw = adamw_;
  adamw.lr = c.optimizer.lr;
  adamw.beta1 = c.optimizer.beta1;
  adamw.beta2 = c.optimizer.beta2;
  adamw.eps = c.optimizer.eps;
  adamw.weight_decay = c.optimizer.weight_decay;
  if (!c.optimizer.no_weight_decay.empty()) {
    adamw.no_weight_decay = [patterns = c.optimizer.no_weight_decay](const std::string& name) {
      for (const std::string& p : patterns)
        if (name.find(p) != std::string::npos) return true;
      return false;
    };
  }
  const bool zero = c.parallel.zero == 1;
  if (parallel_->distributed()) {
    // Every parameter (or shard) is replicated over the data x chunk ranks: their gradients are summed there.
    buckets_ = std::make_unique<nn::GradBuckets>(parameters_, parallel_->data_chunk(),
                                                 static_cast<int64_t>(c.parallel.bucket_mb * 1048576.0), zero);
  }
  if (zero && buckets_) {
    zero_ = std::make_unique<nn::ZeroAdamW>(*buckets_, adamw);
  } else {
    optimizer_ = std::make_unique<nn::AdamW>(parameters_, adamw);
  }

  schedule_.decay = nn::lr_decay_from_string(c.schedule.decay);
  schedule_.peak_lr = c.optimizer.lr;
  schedule_.warmup_steps = c.schedule.warmup_steps;
  schedule_.total_steps = c.train.steps;
  schedule_.init_ratio = c.schedule.init_ratio;
  schedule_.min_lr_ratio = c.schedule.min_lr_ratio;
  schedule_.validate();

  // Data-parallel rank d draws its B / DP windows of every step (apps/lib/data_loader.h); the chunk
  // ranks of one d draw the same windows and keep their own piece of each.
  DataLoaderOptions loader;
  loader.batch_size = c.train.batch_size / grid.data;
  loader.rank = parallel_->coordinates().data;
  loader.world_size = grid.data;
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
    nn::TrainingState stored;
    if (optimizer_) {
      stored = nn::load_checkpoint(*resume_from, *model_, *optimizer_);
    } else {  // ZeRO-1: the whole moments, then this rank's pieces of them
      nn::AdamW full(parameters_, adamw_);
      stored = nn::load_checkpoint(*resume_from, *model_, full);
      zero_->import_state(full);
    }
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

nn::AdamWOptions& Trainer::adam_options() { return zero_ ? zero_->options() : optimizer_->options(); }

void Trainer::zero_grad() {
  if (buckets_) buckets_->zero_grad();
  else model_->zero_grad();
}

double Trainer::sum_over_data_ranks(double value) const {
  return parallel_->distributed() ? parallel_->data_chunk().sum(value) : value;
}

void Trainer::log(const std::string& message) const {
  if (options_.console) std::fprintf(options_.console, "train: %s\n", message.c_str());
}

void Trainer::fail_nonfinite_loss(double loss) const {
  for (const nn::Parameter& p : parameters_) {
    MGL_CHECK(all_finite(p.tensor), "step ", state_.step + 1, ": the loss is ", loss, " because parameter '", p.name,
              "' holds NaN/inf values (the last good checkpoint is kept; lower optimizer.lr or raise warmup)");
  }
  MGL_FAIL("step ", state_.step + 1, ": the loss is ", loss,
           " while every parameter is finite: the logits overflowed (the last good checkpoint is kept)");
}

double Trainer::accumulate_gradients() {
  const TrainSettings& t = options_.config.train;
  const dist::ParallelState& ps = *parallel_;
  const int64_t cp = ps.sizes().chunk, piece = t.seq_len / cp, start = ps.coordinates().chunk * piece;
  // Every rank holds the same number of tokens, so its share of the global mean loss is its own mean
  // times 1 / (DP * CP), and the sum over the ranks of the gradients is the single-process gradient.
  const double share = 1.0 / static_cast<double>(ps.sizes().data * cp * t.grad_accum);
  double loss_sum = 0;
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    if (buckets_) buckets_->set_sync(micro + 1 == t.grad_accum);  // only the last micro-batch communicates
    const Batch batch = train_loader_->next();
    Tensor inputs = batch.inputs, targets = batch.targets;
    std::optional<nn::ChunkRelay> relay;
    Tensor logits;
    if (cp > 1) {
      inputs = contiguous(slice(inputs, 1, start, start + piece));
      targets = contiguous(slice(targets, 1, start, start + piece));
      // The states of this rank's channels: D/TP of them, G/TP groups.
      const nn::MegalodonConfig& m = options_.config.model;
      const int64_t tp = ps.sizes().tensor;
      relay.emplace(ps, inputs.size(0), piece, m.model_dim / tp, m.norm_num_groups / tp, m.cema_ndim,
                    timestep_norm_state_dtype(model_->compute_dtype()), options_.device);
      logits = model_->forward(to(inputs, options_.device), *relay);
    } else {
      logits = model_->forward(to(inputs, options_.device));
    }
    const Tensor loss = model_->token_loss(logits, to(targets, options_.device));
    const double value = loss.item();
    if (!std::isfinite(value)) fail_nonfinite_loss(value);
    loss_sum += value * share;
    backward(share == 1.0 ? loss : mul(loss, share));
    if (relay) relay->finish();
  }
  if (buckets_) buckets_->finish();
  return sum_over_data_ranks(loss_sum);
}

double Trainer::clip_gradients() {
  const double max_norm = options_.config.optimizer.clip_grad_norm;
  // Under tensor parallelism the norm sums over the tensor group too, each parameter counted once.
  const nn::TensorParallel& tp = model_->tensor_parallel();
  if (!zero_) return max_norm > 0 ? nn::clip_grad_norm_(parameters_, max_norm, tp) : nn::grad_norm(parameters_, tp).norm;
  // ZeRO-1: each rank holds its pieces of the summed gradient; the norm sums them over the group.
  const double norm = zero_->grad_norm(tp);
  const double coefficient = max_norm / (norm + 1e-6);
  if (max_norm > 0 && std::isfinite(norm) && coefficient < 1) zero_->scale_grads(coefficient);
  return norm;
}

double Trainer::train_step() {
  parallel_->monitor().set_step(state_.step + 1);
  stall_if_asked(parallel_->world_rank(), state_.step + 1);
  const double loss = accumulate_gradients();
  last_grad_norm_ = clip_gradients();
  if (!std::isfinite(last_grad_norm_)) {
    try {
      nn::check_grads_finite(parameters_);
    } catch (const Error& e) {
      MGL_FAIL("step ", state_.step + 1, ": ", e.what(), " (the last good checkpoint is kept)");
    }
    // Every gradient this rank holds is finite, yet the norm is not: the squares overflowed, or (ZeRO-1,
    // whose .grad are this rank's unreduced gradients) the sum over the ranks is not finite.
    MGL_FAIL("step ", state_.step + 1, ": the global gradient norm is ", last_grad_norm_,
             parallel_->distributed() ? " (over the gradients summed across the ranks)" : "",
             " (the last good checkpoint is kept; lower optimizer.lr or raise warmup)");
  }
  adam_options().lr = schedule_.lr(state_.step);
  if (zero_) zero_->step();
  else optimizer_->step();
  zero_grad();
  state_.step += 1;
  state_.data_position = train_loader_->step();
  return loss;
}

ValidationResult Trainer::validate() {
  const TrainSettings& t = options_.config.train;
  NoGradGuard no_grad;
  nn::EvalModeGuard eval_mode(*model_);
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
    const Tensor logits = model_->forward(to(Tensor::from_vector(inputs, {rows, L}), options_.device));
    const double loss = model_->token_loss(logits, to(Tensor::from_vector(targets, {rows, L}), options_.device)).item();
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
  state_.rng_seed = default_generator().seed;
  state_.rng_offset = default_generator().offset;
  // One file with whole tensors, written by rank 0 (atomically); ZeRO-1 gathers the moments first, and
  // the tensor group of rank 0 (the ranks with data and chunk coordinate 0) gathers the shards to it.
  const bool gathers = parallel_->data_chunk().rank() == 0;
  if (zero_) {
    nn::AdamW full(parameters_, adamw_);
    zero_->export_state(full);
    if (gathers) checkpoints_->save(*model_, full, state_);
  } else if (gathers) {
    checkpoints_->save(*model_, *optimizer_, state_);
  }
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

  const int64_t tokens_per_step = c.train.batch_size * c.train.seq_len * c.train.grad_accum;  // all ranks
  const double devices = static_cast<double>(parallel_->world_size());
  // MFU = model FLOPs per second / the peak of all devices; the FLOPs are the model's (nn/flops.h), not what
  // the kernels actually execute (activation checkpointing's recomputation does not count).
  const double flops_per_step = nn::megalodon_flops_per_token(c.model, c.train.seq_len).total() * tokens_per_step;
  const double peak_flops = peak_tflops_per_device(c.train.peak_tflops, options_.device, model_->compute_dtype()) *
                            1e12 * devices;
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_steps = 0;
  double loss = 0;
  auto validate_and_log = [&] {
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
    const auto step_start = Clock::now();
    loss = train_step();
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    window_steps += 1;
    json line{{"step", state_.step},
              {"loss", loss},
              {"lr", adam_options().lr},
              {"grad_norm", last_grad_norm_},
              {"tokens", state_.step * tokens_per_step},
              {"tokens_per_s", tokens_per_step / step_seconds},
              {"tokens_per_s_per_device", tokens_per_step / step_seconds / devices},
              {"step_ms", step_seconds * 1e3},
              {"elapsed_s", std::chrono::duration<double>(Clock::now() - start).count()}};
    if (peak_flops > 0) line["mfu"] = flops_per_step / step_seconds / peak_flops;
    // This (the logging) rank's device: tensors held, and the high-water mark since the start.
    const MemoryStats memory = on_cuda ? memory_stats(options_.device) : MemoryStats{};
    const double memory_gib = static_cast<double>(memory.current_bytes) / kGiB;
    const double peak_gib = static_cast<double>(memory.peak_bytes) / kGiB;
    if (on_cuda) {
      line["device_mem_gib"] = memory_gib;
      line["device_peak_gib"] = peak_gib;
    }
    write_metrics(line.dump());
    if (state_.step % c.train.log_every == 0 || state_.step == c.train.steps) {
      const double window_seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double tokens_per_s = window_steps * tokens_per_step / window_seconds;
      const double eta = (c.train.steps - state_.step) * window_seconds / window_steps;
      char per_device[48] = "", mfu[32] = "", memory_text[48] = "";
      if (parallel_->distributed())
        std::snprintf(per_device, sizeof(per_device), " (%.0f per device)", tokens_per_s / devices);
      if (peak_flops > 0)
        std::snprintf(mfu, sizeof(mfu), " | MFU %.1f%%", 100.0 * flops_per_step * window_steps / window_seconds / peak_flops);
      if (on_cuda) std::snprintf(memory_text, sizeof(memory_text), " | mem %.2f/%.2f GiB", memory_gib, peak_gib);
      char text[320];
      std::snprintf(text, sizeof(text),
                    "step %lld/%lld | loss %.4f | lr %.2e | grad %.3f | %.1f ms/step | %.0f tok/s%s%s%s | ETA %s",
                    static_cast<long long>(state_.step), static_cast<long long>(c.train.steps), loss,
                    adam_options().lr, last_grad_norm_, 1e3 * window_seconds / window_steps, tokens_per_s, per_device,
                    mfu, memory_text, format_duration(eta).c_str());
      if (options_.console) progress.update(text);
      window_start = Clock::now();
      window_steps = 0;
    }
    if (c.eval.every > 0 && state_.step % c.eval.every == 0 && state_.step < c.train.steps) validate_and_log();
    if (state_.step % c.train.checkpoint_every == 0 && state_.step < c.train.steps) save_checkpoint();
  }
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
      const std::shared_ptr<nn::Megalodon> whole = nn::gather_whole_model(model_);
      if (parallel_->is_logging_rank()) summary.long_context = evaluate_long_context(*whole);
    }
  } else {
    log("the run is already complete at step " + std::to_string(state_.step));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  summary.last_step = state_.step;
  summary.last_loss = loss;
  summary.tokens_per_s = (state_.step - summary.first_step) * tokens_per_step / std::max(seconds, 1e-9);
  if (on_cuda) summary.peak_device_bytes = memory_stats(options_.device).peak_bytes;
  return summary;
}

}  // namespace mgl::apps

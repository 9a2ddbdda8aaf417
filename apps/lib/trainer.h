#pragma once
// The training loop of the `train` app, as a library so that tests drive it in-process.
//
// One optimizer step:
//   for each of grad_accum micro-batches: ids -> logits -> mean cross-entropy / grad_accum -> backward
//   global-norm clipping -> lr from the schedule -> AdamW step -> zero the gradients
// with every random draw (initialisation, data order, dropout) a pure function of the seed and the step,
// so that a run saved at step s and resumed replays steps s+1, ... exactly (bitwise on the CPU).
//
// Under mpirun (docs/parallelism.md) every rank builds the same Trainer over one ParallelState: each
// data-parallel rank draws its share of the global batch, each chunk-parallel rank runs its piece of
// every sequence (nn/chunk_parallel.h), gradients are summed over the data x chunk ranks in buckets
// overlapped with backward (nn/grad_buckets.h), and the loss each rank differentiates is its share of
// the global mean, so every grid computes the single-process step. Only world rank 0 prints and writes
// the run directory.
//
// The run directory (`out`) holds config.json (the resolved config), metrics.jsonl (one object per step;
// validation results on their own lines), checkpoints/step_<8 digits>.h5 (nn/checkpoint.h), and
// long_context.tsv when the long-context evaluation runs.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "apps/lib/data_loader.h"
#include "apps/lib/metrics_log.h"
#include "apps/lib/prepare_data.h"
#include "apps/lib/run_config.h"
#include "nn/adamw.h"
#include "dist/parallel_state.h"
#include "nn/checkpoint.h"
#include "nn/grad_buckets.h"
#include "nn/lr_schedule.h"
#include "nn/megalodon.h"
#include "nn/zero_adamw.h"

namespace mgl::apps {

struct TrainerOptions {
  RunConfig config;
  PreparedData data;
  std::string out;                   // the run directory (created)
  Device device = Device::cpu();
  bool resume = false;               // continue from the newest valid checkpoint in out/checkpoints
  // Weights to start from (nn/weights.h: a checkpoint, run or export directory, safetensors, HDF5 weights):
  // a new run from step 0 with fresh optimizer state (fine-tuning). A checkpoint to resume wins over it.
  std::string init_from;
  std::FILE* console = stdout;       // progress line and messages (nullptr: silent; rank 0 only)
  // The process grid; null: a plain single-process run on `device`. Its device wins over `device`.
  std::shared_ptr<dist::ParallelState> parallel;
};

struct ValidationResult {
  double loss = 0;            // mean cross-entropy, nats per token
  double perplexity = 0;      // exp(loss)
  double bits_per_byte = 0;   // loss * tokens / (bytes * ln 2)
  int64_t tokens = 0;
};

// One point of the long-context curve: the loss of a fixed target span given `context` tokens.
struct LongContextPoint {
  int64_t context = 0;        // tokens of the window, the target included
  int64_t target_tokens = 0;
  double mean_nll = 0;        // nats per target token
};

struct TrainingSummary {
  int64_t first_step = 0;     // the step the run started from (> 0 when resumed)
  int64_t last_step = 0;
  double last_loss = 0;
  std::optional<ValidationResult> validation;  // at the end
  std::vector<LongContextPoint> long_context;  // at the end, when eval.long_context_tokens > 0
  double tokens_per_s = 0;    // over the steps of this process, all ranks together
  int64_t peak_device_bytes = 0;
  bool interrupted = false;   // stopped early by SIGINT/SIGTERM after saving a checkpoint
};

class Trainer {
 public:
  // Builds the model, the optimizer and the loaders; with options.resume, restores the newest valid
  // checkpoint. Throws mgl::Error for any inconsistency (data vs model vocabulary, checkpoint vs config,
  // a run directory that holds checkpoints without --resume, ...).
  explicit Trainer(TrainerOptions options);

  // Trains up to config.train.steps, validating, logging and checkpointing on the way. A non-finite loss
  // or gradient throws mgl::Error naming the step and the tensor; the last good checkpoint stays.
  TrainingSummary run();

  ValidationResult validate();
  // The first half of a step: forward and backward over grad_accum micro-batches, leaving the mean
  // gradient in the parameters' .grad (summed over the ranks; with ZeRO-1, in this rank's bucket
  // pieces); returns the mean loss over the global batch. (train_step adds clipping and the update.)
  double accumulate_gradients();
  int64_t step() const { return state_.step; }
  const nn::Megalodon& model() const { return *model_; }
  const dist::ParallelState& parallel() const { return *parallel_; }
  DType compute_dtype() const { return model_->compute_dtype(); }

 private:
  double train_step();        // one optimizer step; returns the mean loss of its micro-batches
  double clip_gradients();    // the global gradient norm, clipping to optimizer.clip_grad_norm
  nn::AdamWOptions& adam_options();
  void zero_grad();
  double sum_over_data_ranks(double value) const;  // all-reduce over the data x chunk group
  bool stop_requested() const;                      // SIGINT/SIGTERM seen (on any rank)
  void save_checkpoint();
  void write_metrics(const std::string& json_object) const;
  double bytes_per_token() const;  // of the held-out text, for bits per byte
  // The loss of the same held-out target tokens with contexts of growing length (the paper's Figure 5)
  // under `model` (whole: nn::gather_whole_model), written to <out>/long_context.tsv; see the
  // definition for the exact windows.
  std::vector<LongContextPoint> evaluate_long_context(nn::Megalodon& model);
  void log(const std::string& message) const;
  [[noreturn]] void fail_nonfinite_loss(double loss) const;

  TrainerOptions options_;
  std::shared_ptr<dist::ParallelState> parallel_;
  std::shared_ptr<nn::Megalodon> model_;
  std::vector<nn::Parameter> parameters_;
  nn::AdamWOptions adamw_;
  std::unique_ptr<nn::GradBuckets> buckets_;  // distributed runs
  std::unique_ptr<nn::AdamW> optimizer_;      // all but ZeRO-1 runs
  std::unique_ptr<nn::ZeroAdamW> zero_;       // ZeRO-1 runs
  nn::LrSchedule schedule_;
  std::unique_ptr<DataLoader> train_loader_;
  std::vector<uint32_t> val_tokens_;
  std::unique_ptr<nn::CheckpointDirectory> checkpoints_;
  std::unique_ptr<MetricsLog> metrics_;
  nn::TrainingState state_;
  double last_grad_norm_ = 0;
};

// Which device "auto" means here: cuda:0 when a GPU is usable, else the CPU.
Device resolve_device(const std::string& name);

}  // namespace mgl::apps

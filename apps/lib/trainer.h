#pragma once
// The training loop of the `train` app, as a library so that tests drive it in-process.
//
// One optimizer step:
//   for each of grad_accum micro-batches: ids -> logits -> mean cross-entropy / grad_accum -> backward
//   global-norm clipping -> lr from the schedule -> AdamW step -> zero the gradients
// with every random draw (initialisation, data order, dropout) a pure function of the seed and the step,
// so that a run saved at step s and resumed replays steps s+1, ... exactly (bitwise on the CPU).
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
#include "nn/checkpoint.h"
#include "nn/lr_schedule.h"
#include "nn/megalodon.h"

namespace mgl::apps {

struct TrainerOptions {
  RunConfig config;
  PreparedData data;
  std::string out;                   // the run directory (created)
  Device device = Device::cpu();
  bool resume = false;               // continue from the newest valid checkpoint in out/checkpoints
  std::FILE* console = stdout;       // progress line and messages (nullptr: silent)
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
  double tokens_per_s = 0;    // over the steps of this process
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
  // gradient in the parameters' .grad; returns the mean loss. (train_step adds clipping and the update.)
  double accumulate_gradients();
  // The loss of the same held-out target tokens with contexts of growing length (the paper's Figure 5),
  // written to <out>/long_context.tsv; see the definition for the exact windows.
  std::vector<LongContextPoint> evaluate_long_context();
  int64_t step() const { return state_.step; }
  const nn::Megalodon& model() const { return *model_; }
  DType compute_dtype() const { return model_->compute_dtype(); }

 private:
  double train_step();        // one optimizer step; returns the mean loss of its micro-batches
  void save_checkpoint();
  double bytes_per_token() const;  // of the held-out text, for bits per byte
  void log(const std::string& message) const;
  [[noreturn]] void fail_nonfinite_loss(double loss) const;

  TrainerOptions options_;
  std::shared_ptr<nn::Megalodon> model_;
  std::vector<nn::Parameter> parameters_;
  std::unique_ptr<nn::AdamW> optimizer_;
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

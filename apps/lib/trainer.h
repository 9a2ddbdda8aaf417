#pragma once
// The training loop of the `train` app, as a library so that tests drive it in-process: steps
// (apps/lib/training_step.h), with validation, logging, checkpoints and the kernel profiler around them.
// Every random draw (initialisation, data order, dropout) is a pure function of the seed and the step,
// so that a run saved at step s and resumed replays steps s+1, ... exactly (bitwise on the CPU).
//
// Under mpirun (docs/parallelism.md) every rank builds the same Trainer over one ParallelState (the step
// explains how every grid computes the single-process step); each data-parallel rank draws its share of
// the global batch from the data loader. Only world rank 0 prints and writes the run directory.
//
// Steps are issued without the host waiting for the device; their losses and norms are read when a step
// is logged (train.log_every), evaluated after or checkpointed, and the metrics lines of the steps since
// the previous read are written then (TrainingStep::read_results).
//
// The run directory (`out`) holds config.json (the resolved config), metrics.jsonl (one object per step;
// validation results on their own lines), checkpoints/step_<8 digits>.h5 (nn/checkpoint.h), and
// long_context.tsv when the long-context evaluation runs.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/lib/data_loader.h"
#include "apps/lib/kernel_profiler.h"
#include "apps/lib/metrics_log.h"
#include "apps/lib/prepare_data.h"
#include "apps/lib/run_config.h"
#include "apps/lib/training_step.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "dist/parallel_state.h"
#include "nn/checkpoint.h"
#include "nn/megalodon.h"

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
  // With profile.enabled, the kernels of a window of steps are profiled (apps/lib/kernel_profiler.h; on
  // rank 0, which needs a CUDA device) and reported when it closes; see profile_window_closed.
  ProfileOptions profile;
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
  // The first half of a step on the next batch of the data (TrainingStep::accumulate_gradients): the
  // mean loss over the global batch, its gradient left in the parameters' .grad.
  double accumulate_gradients();
  int64_t step() const { return state_.step; }
  const nn::Megalodon& model() const { return step_->model(); }
  const dist::ParallelState& parallel() const { return *parallel_; }
  DType compute_dtype() const { return step_->model().compute_dtype(); }

 private:
  // Issues one optimizer step on the next batches of the data, profiled in the window, without waiting
  // for the device (TrainingStep::run).
  void train_step();
  // Reads the results of the steps issued since the last call (TrainingStep::read_results: one host
  // synchronisation, collective under mpirun; throws for a non-finite step) and writes their metrics
  // lines; latest_ becomes the last one's.
  void settle();
  // The profiler's window is steps (after, after + steps] of this process (ProfileOptions), or fewer when
  // the run ends first: closed once its last step has run, then reported on the console (and in JSON).
  bool profile_window_closed() const;
  void report_kernel_profile() const;
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

  TrainerOptions options_;
  std::shared_ptr<dist::ParallelState> parallel_;
  std::unique_ptr<TrainingStep> step_;
  std::unique_ptr<DataLoader> train_loader_;
  std::vector<uint32_t> val_tokens_;
  std::unique_ptr<nn::CheckpointDirectory> checkpoints_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<KernelProfiler> profiler_;  // with options.profile.enabled, on rank 0
  int64_t steps_run_ = 0;                     // by this process (the profiler's window counts them)
  nn::TrainingState state_;

  // What the host knows of a step it issued until settle() reads its results.
  struct IssuedStep {
    DeviceTimePoint start, end;                      // around the step's work, on the device
    std::chrono::steady_clock::time_point issued;    // when the host had issued it
    MemoryStats memory;                              // this rank's device memory then (CUDA)
  };
  std::vector<IssuedStep> issued_;
  StepResult latest_;                                // the last step read
  std::chrono::steady_clock::time_point started_;   // run()'s start
};

// Which device "auto" means here: cuda:0 when a GPU is usable, else the CPU.
Device resolve_device(const std::string& name);

}  // namespace mgl::apps

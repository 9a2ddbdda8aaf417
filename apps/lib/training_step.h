#pragma once
// One optimizer step of MEGALODON training, the piece that `train` (apps/lib/trainer.h) and `bench_train`
// share, so that the benchmark times exactly the step the trainer runs:
//   for each of grad_accum micro-batches: ids -> mean cross-entropy / grad_accum -> backward
//     (the head and the loss fused, without the logits: nn/megalodon.h forward_loss)
//   global-norm clipping -> lr from the schedule -> AdamW step -> zero the gradients
// It owns the model and its optimizer and takes each micro-batch from a function: the trainer passes its
// data loader, the benchmark a loader over random tokens.
//
// Under mpirun (docs/parallelism.md) every rank builds the same TrainingStep over one ParallelState: each
// data-parallel rank draws its share of the global batch, each chunk-parallel rank runs its piece of every
// sequence (nn/chunk_parallel.h), gradients are summed over the data x chunk ranks in buckets overlapped
// with backward (nn/grad_buckets.h), and the loss each rank differentiates is its share of the global
// mean, so every grid computes the single-process step.
//
// No host synchronisation inside a step: the token ids stay on the host, where the embedding and the loss
// check them (ops/ops.h), uploads do not wait (core/host_upload.h), the loss is accumulated on the device,
// and the gradient norm, the clipping and the decision to skip a non-finite step never leave it. The host
// reads the losses and norms of the steps since its last read at once, when it logs (read_results); a test
// counts the synchronisations of unlogged steps (core/cuda_context.h host_synchronizations) and finds none.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "apps/lib/data_loader.h"
#include "apps/lib/run_config.h"
#include "dist/parallel_state.h"
#include "nn/adamw.h"
#include "nn/checkpoint.h"
#include "nn/grad_buckets.h"
#include "nn/grad_clip.h"
#include "nn/lr_schedule.h"
#include "nn/megalodon.h"
#include "nn/zero_adamw.h"

namespace mgl::apps {

// The parts of a step, in the order they run (forward and backward once per micro-batch). forward
// includes fetching the batch and the loss; backward includes waiting for the gradient sums under
// mpirun; optimizer is the gradient norm, clipping, the AdamW update and zeroing the gradients.
enum class StepPhase { forward, backward, optimizer, done };

// Called as each phase begins, and with StepPhase::done when the step's work is issued (on a GPU its last
// kernels may still run: a caller timing phases records device events here, core/cuda_context.h).
using PhaseMarker = std::function<void(StepPhase)>;
// This rank's next micro-batch, on the CPU (as DataLoader::next gives it).
using BatchSource = std::function<Batch()>;

struct StepResult {
  int64_t step = 0;      // the optimizer step, counted from 1 (run()'s `step` + 1)
  double loss = 0;       // mean cross-entropy over the global batch
  double grad_norm = 0;  // global L2 norm of the gradient, before clipping
  double lr = 0;         // the learning rate the update used
};

class TrainingStep {
 public:
  // Checks the config against the grid and the sequence length against the chunk size, then seeds the
  // default generator with train.seed and builds the model (initialisation is the generator's first use;
  // dropout continues its stream) on the grid's device in the compute dtype of train.dtype, the
  // optimizer (ZeRO-1's sharded one when parallel.zero = 1 under mpirun) and the lr schedule.
  TrainingStep(const RunConfig& config, std::shared_ptr<dist::ParallelState> parallel);

  // Issues optimizer step `step` + 1, at the schedule's lr for `step`, and returns without waiting for
  // the device: the host never reads a value of the step (on CUDA its kernels run behind the host), and
  // its loss and gradient norm stay on the device until read_results(). The clipping coefficient
  // min(1, max_norm / (norm + 1e-6)) is formed on the device; a step whose gradient norm is not finite
  // changes no weight and no moment (AdamW reads the norm on the device and skips, as PyTorch's GradScaler
  // skips on found_inf), and read_results() reports it.
  void run(int64_t step, const BatchSource& next_batch, const PhaseMarker& mark = {});
  // The results of the steps run since the last read, in order, from one read of the device: the one host
  // synchronisation a logged step needs. Under mpirun every rank must read after the same steps (the
  // losses are summed over the data x chunk group). A step whose loss or gradient norm was not finite
  // throws mgl::Error naming the step and the tensor (the parameter holding NaN/inf, or the first
  // parameter whose gradient does), the errors a step raised when it read its own loss.
  std::vector<StepResult> read_results();
  // The first half of run(): forward and backward over grad_accum micro-batches, leaving the mean
  // gradient in the parameters' .grad (summed over the ranks; with ZeRO-1, in this rank's bucket pieces);
  // returns this rank's share of the mean loss over the global batch, one f64 on the device (the sum of
  // the shares over the data x chunk group is the mean).
  Tensor accumulate_gradients(const BatchSource& next_batch, const PhaseMarker& mark = {});

  // Checkpoints hold the whole model and whole AdamW moments. Loading restores both (ZeRO-1 keeps this
  // rank's pieces of the moments); saving writes where `write` (ZeRO-1 first gathers the moments: every
  // rank of the group must call it).
  nn::TrainingState load_checkpoint(const std::string& path);
  void save_checkpoint(nn::CheckpointDirectory& directory, const nn::TrainingState& state, bool write);

  nn::Megalodon& model() const { return *model_; }
  const std::shared_ptr<nn::Megalodon>& shared_model() const { return model_; }

 private:
  // What a step leaves on the device until read_results().
  struct PendingStep {
    int64_t step = 0;
    double lr = 0;
    Tensor loss_share;    // [1] f64: accumulate_gradients' result
    nn::GlobalNorm norm;  // the squares named by norm_names_, and the global norm before clipping
  };

  nn::GlobalNorm clip_gradients();  // the global gradient norm, clipping to optimizer.clip_grad_norm
  nn::AdamWOptions& adam_options();
  void zero_grad();
  [[noreturn]] void fail_nonfinite_loss(int64_t step, double loss) const;
  [[noreturn]] void fail_nonfinite_norm(int64_t step, double norm, const std::vector<double>& squares) const;

  RunConfig config_;
  std::shared_ptr<dist::ParallelState> parallel_;
  std::shared_ptr<nn::Megalodon> model_;
  std::vector<nn::Parameter> parameters_;
  nn::AdamWOptions adamw_;
  std::unique_ptr<nn::GradBuckets> buckets_;  // distributed runs
  std::unique_ptr<nn::AdamW> optimizer_;      // all but ZeRO-1 runs
  std::unique_ptr<nn::ZeroAdamW> zero_;       // ZeRO-1 runs
  nn::LrSchedule schedule_;
  std::vector<std::string> norm_names_;  // the parameter of each square of a step's norm
  std::vector<PendingStep> pending_;
};

// The peak MFU is measured against, TFLOP/s per device: `configured` (train.peak_tflops) when set, else
// 790 for bf16 on CUDA (the dense bf16 rate measured on an H200, docs/perf.md "Model FLOPs and MFU"),
// else 0: the CPU's rate depends on the machine and its BLAS, f32 on a GPU on whether TF32 is allowed,
// so they report MFU only when the key is set.
double peak_tflops_per_device(double configured, const Device& device, DType compute);

}  // namespace mgl::apps

#include "apps/lib/training_step.h"

#include <cmath>
#include <optional>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/random.h"
#include "nn/chunk_parallel.h"
#include "nn/grad_clip.h"
#include "ops/ops.h"

namespace mgl::apps {

namespace {

// The dense bf16 rate measured on an H200 (docs/perf.md, "Model FLOPs and MFU").
constexpr double kBf16CudaPeakTflops = 790.0;

DType training_dtype(const std::string& setting, const Device& device) {
  if (setting == "auto") return device.is_cuda() ? DType::bf16 : DType::f32;
  return dtype_from_name(setting);
}

bool all_finite(const Tensor& t) {
  NoGradGuard no_grad;
  const Tensor x = cast(t, DType::f32);
  return std::isfinite(sum(mul(x, x)).item());
}

}  // namespace

double peak_tflops_per_device(double configured, const Device& device, DType compute) {
  if (configured > 0) return configured;
  return device.is_cuda() && compute == DType::bf16 ? kBf16CudaPeakTflops : 0.0;
}

TrainingStep::TrainingStep(const RunConfig& config, std::shared_ptr<dist::ParallelState> parallel)
    : config_(config), parallel_(std::move(parallel)) {
  const RunConfig& c = config_;
  const dist::GridSizes& grid = parallel_->sizes();
  MGL_CHECK(grid.data == c.parallel.data && grid.chunk == c.parallel.chunk && grid.tensor == c.parallel.tensor,
            "the process grid (", grid.str(), ") is not the config's (data ", c.parallel.data, " x chunk ",
            c.parallel.chunk, " x tensor ", c.parallel.tensor, ")");
  MGL_CHECK(c.train.seq_len % c.model.chunk_size == 0 || c.train.seq_len < c.model.chunk_size,
            "train.seq_len (", c.train.seq_len, ") must be a multiple of model.chunk_size (", c.model.chunk_size,
            ") or shorter than one chunk");

  // Under tensor parallelism every rank of a tensor group builds the whole model from the same seed and
  // keeps its pieces (nn/tensor_parallel.h), so the start does not depend on the grid.
  manual_seed(static_cast<uint64_t>(c.train.seed));
  model_ = std::make_shared<nn::Megalodon>(c.model, nn::InitOptions{}, nn::TensorParallel(parallel_->tensor()));
  model_->to(parallel_->device());
  model_->set_compute_dtype(training_dtype(c.train.dtype, parallel_->device()));
  model_->train();
  parameters_ = model_->named_parameters();

  adamw_.lr = c.optimizer.lr;
  adamw_.beta1 = c.optimizer.beta1;
  adamw_.beta2 = c.optimizer.beta2;
  adamw_.eps = c.optimizer.eps;
  adamw_.weight_decay = c.optimizer.weight_decay;
  if (!c.optimizer.no_weight_decay.empty()) {
    adamw_.no_weight_decay = [patterns = c.optimizer.no_weight_decay](const std::string& name) {
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
    zero_ = std::make_unique<nn::ZeroAdamW>(*buckets_, adamw_);
  } else {
    optimizer_ = std::make_unique<nn::AdamW>(parameters_, adamw_);
  }

  schedule_.decay = nn::lr_decay_from_string(c.schedule.decay);
  schedule_.peak_lr = c.optimizer.lr;
  schedule_.warmup_steps = c.schedule.warmup_steps;
  schedule_.total_steps = c.train.steps;
  schedule_.init_ratio = c.schedule.init_ratio;
  schedule_.min_lr_ratio = c.schedule.min_lr_ratio;
  schedule_.validate();
}

nn::AdamWOptions& TrainingStep::adam_options() { return zero_ ? zero_->options() : optimizer_->options(); }

void TrainingStep::zero_grad() {
  if (buckets_) buckets_->zero_grad();
  else model_->zero_grad();
}

void TrainingStep::fail_nonfinite_loss(int64_t step, double loss) const {
  for (const nn::Parameter& p : parameters_) {
    MGL_CHECK(all_finite(p.tensor), "step ", step + 1, ": the loss is ", loss, " because parameter '", p.name,
              "' holds NaN/inf values (the last good checkpoint is kept; lower optimizer.lr or raise warmup)");
  }
  MGL_FAIL("step ", step + 1, ": the loss is ", loss,
           " while every parameter is finite: the logits overflowed (the last good checkpoint is kept)");
}

double TrainingStep::accumulate_gradients(int64_t step, const BatchSource& next_batch, const PhaseMarker& mark) {
  const TrainSettings& t = config_.train;
  const dist::ParallelState& ps = *parallel_;
  const Device device = ps.device();
  const int64_t cp = ps.sizes().chunk, piece = t.seq_len / cp, start = ps.coordinates().chunk * piece;
  // Every rank holds the same number of tokens, so its share of the global mean loss is its own mean
  // times 1 / (DP * CP), and the sum over the ranks of the gradients is the single-process gradient.
  const double share = 1.0 / static_cast<double>(ps.sizes().data * cp * t.grad_accum);
  double loss_sum = 0;
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    if (mark) mark(StepPhase::forward);
    if (buckets_) buckets_->set_sync(micro + 1 == t.grad_accum);  // only the last micro-batch communicates
    const Batch batch = next_batch();
    Tensor inputs = batch.inputs, targets = batch.targets;
    std::optional<nn::ChunkRelay> relay;
    Tensor logits;
    if (cp > 1) {
      inputs = contiguous(slice(inputs, 1, start, start + piece));
      targets = contiguous(slice(targets, 1, start, start + piece));
      // The states of this rank's channels: D/TP of them, G/TP groups.
      const nn::MegalodonConfig& m = config_.model;
      const int64_t tp = ps.sizes().tensor;
      relay.emplace(ps, inputs.size(0), piece, m.model_dim / tp, m.norm_num_groups / tp, m.cema_ndim,
                    timestep_norm_state_dtype(model_->compute_dtype()), device);
      logits = model_->forward(to(inputs, device), *relay);
    } else {
      logits = model_->forward(to(inputs, device));
    }
    const Tensor loss = model_->token_loss(logits, to(targets, device));
    const double value = loss.item();
    if (!std::isfinite(value)) fail_nonfinite_loss(step, value);
    loss_sum += value * share;
    if (mark) mark(StepPhase::backward);
    backward(share == 1.0 ? loss : mul(loss, share));
    if (relay) relay->finish();
  }
  if (buckets_) buckets_->finish();
  return ps.distributed() ? ps.data_chunk().sum(loss_sum) : loss_sum;
}

double TrainingStep::clip_gradients() {
  const double max_norm = config_.optimizer.clip_grad_norm;
  // Under tensor parallelism the norm sums over the tensor group too, each parameter counted once.
  const nn::TensorParallel& tp = model_->tensor_parallel();
  if (!zero_) return max_norm > 0 ? nn::clip_grad_norm_(parameters_, max_norm, tp) : nn::grad_norm(parameters_, tp).norm;
  // ZeRO-1: each rank holds its pieces of the summed gradient; the norm sums them over the group.
  const double norm = zero_->grad_norm(tp);
  const double coefficient = max_norm / (norm + 1e-6);
  if (max_norm > 0 && std::isfinite(norm) && coefficient < 1) zero_->scale_grads(coefficient);
  return norm;
}

StepResult TrainingStep::run(int64_t step, const BatchSource& next_batch, const PhaseMarker& mark) {
  StepResult result;
  result.loss = accumulate_gradients(step, next_batch, mark);
  if (mark) mark(StepPhase::optimizer);
  result.grad_norm = clip_gradients();
  if (!std::isfinite(result.grad_norm)) {
    try {
      nn::check_grads_finite(parameters_);
    } catch (const Error& e) {
      MGL_FAIL("step ", step + 1, ": ", e.what(), " (the last good checkpoint is kept)");
    }
    // Every gradient this rank holds is finite, yet the norm is not: the squares overflowed, or (ZeRO-1,
    // whose .grad are this rank's unreduced gradients) the sum over the ranks is not finite.
    MGL_FAIL("step ", step + 1, ": the global gradient norm is ", result.grad_norm,
             parallel_->distributed() ? " (over the gradients summed across the ranks)" : "",
             " (the last good checkpoint is kept; lower optimizer.lr or raise warmup)");
  }
  result.lr = schedule_.lr(step);
  adam_options().lr = result.lr;
  if (zero_) zero_->step();
  else optimizer_->step();
  zero_grad();
  if (mark) mark(StepPhase::done);
  return result;
}

nn::TrainingState TrainingStep::load_checkpoint(const std::string& path) {
  if (optimizer_) return nn::load_checkpoint(path, *model_, *optimizer_);
  // ZeRO-1: the whole moments, then this rank's pieces of them.
  nn::AdamW full(parameters_, adamw_);
  const nn::TrainingState stored = nn::load_checkpoint(path, *model_, full);
  zero_->import_state(full);
  return stored;
}

void TrainingStep::save_checkpoint(nn::CheckpointDirectory& directory, const nn::TrainingState& state, bool write) {
  if (zero_) {
    nn::AdamW full(parameters_, adamw_);
    zero_->export_state(full);
    if (write) directory.save(*model_, full, state);
  } else if (write) {
    directory.save(*model_, *optimizer_, state);
  }
}

}  // namespace mgl::apps

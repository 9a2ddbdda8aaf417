#include "apps/lib/training_step.h"

#include <cmath>
#include <optional>
#include <string>

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
  if (zero_) {
    norm_names_ = zero_->grad_part_names();
  } else {
    for (const nn::Parameter& p : parameters_) norm_names_.push_back(p.name);
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

void TrainingStep::fail_nonfinite_norm(int64_t step, double norm, const std::vector<double>& squares) const {
  const std::string bad = nn::first_nonfinite(squares, norm_names_);
  MGL_CHECK(bad.empty(), "step ", step + 1, ": gradient of parameter '", bad,
            "' contains NaN or inf (the last good checkpoint is kept)");
  // Every gradient this rank holds is finite, yet the norm is not: the squares overflowed, or another rank
  // holds the bad values (under ZeRO-1 each rank squares its own pieces of the summed gradient).
  MGL_FAIL("step ", step + 1, ": the global gradient norm is ", norm,
           parallel_->distributed() ? " (over the gradients summed across the ranks)" : "",
           " (the last good checkpoint is kept; lower optimizer.lr or raise warmup)");
}

Tensor TrainingStep::accumulate_gradients(const BatchSource& next_batch, const PhaseMarker& mark) {
  const TrainSettings& t = config_.train;
  const dist::ParallelState& ps = *parallel_;
  const int64_t cp = ps.sizes().chunk, piece = t.seq_len / cp, start = ps.coordinates().chunk * piece;
  // Every rank holds the same number of tokens, so its share of the global mean loss is its own mean
  // times 1 / (DP * CP), and the sum over the ranks of the gradients is the single-process gradient.
  const double share = 1.0 / static_cast<double>(ps.sizes().data * cp * t.grad_accum);
  Tensor loss_share;  // sum over the micro-batches of share * loss, in f64 on the device
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    if (mark) mark(StepPhase::forward);
    if (buckets_) buckets_->set_sync(micro + 1 == t.grad_accum);  // only the last micro-batch communicates
    // The ids and targets stay on the host: the embedding and the loss read them there and upload them
    // without waiting for the device.
    const Batch batch = next_batch();
    Tensor inputs = batch.inputs, targets = batch.targets;
    std::optional<nn::ChunkRelay> relay;
    Tensor loss;  // the fused head and loss: no [B, L, vocab] logits (nn/megalodon.h forward_loss)
    if (cp > 1) {
      inputs = contiguous(slice(inputs, 1, start, start + piece));
      targets = contiguous(slice(targets, 1, start, start + piece));
      // The states of this rank's channels: D/TP of them, G/TP groups.
      const nn::MegalodonConfig& m = config_.model;
      const int64_t tp = ps.sizes().tensor;
      relay.emplace(ps, inputs.size(0), piece, m.model_dim / tp, m.norm_num_groups / tp, m.cema_ndim,
                    timestep_norm_state_dtype(model_->compute_dtype()), ps.device());
      loss = model_->forward_loss(inputs, targets, *relay);
    } else {
      loss = model_->forward_loss(inputs, targets);
    }
    {
      NoGradGuard no_grad;
      const Tensor term = mul(reshape(cast(loss.detach(), DType::f64), {1}), share);
      loss_share = loss_share.defined() ? add(loss_share, term) : term;
    }
    if (mark) mark(StepPhase::backward);
    backward(share == 1.0 ? loss : mul(loss, share));
    if (relay) relay->finish();
  }
  if (buckets_) buckets_->finish();
  return loss_share;
}

nn::GlobalNorm TrainingStep::clip_gradients() {
  const double max_norm = config_.optimizer.clip_grad_norm;
  // Under tensor parallelism the norm sums over the tensor group too, each parameter counted once.
  const nn::TensorParallel& tp = model_->tensor_parallel();
  if (!zero_)
    return max_norm > 0 ? nn::clip_grad_norm_on_device_(parameters_, max_norm, tp)
                        : nn::grad_norm_on_device(parameters_, tp);
  // ZeRO-1: each rank holds its pieces of the summed gradient; the norm sums them over the group.
  const nn::GlobalNorm norm = zero_->grad_norm(tp);
  if (max_norm > 0) zero_->clip_grads(norm.norm(), max_norm);
  return norm;
}

void TrainingStep::run(int64_t step, const BatchSource& next_batch, const PhaseMarker& mark) {
  PendingStep pending;
  pending.step = step;
  pending.loss_share = accumulate_gradients(next_batch, mark);
  if (mark) mark(StepPhase::optimizer);
  pending.norm = clip_gradients();
  pending.lr = schedule_.lr(step);
  adam_options().lr = pending.lr;
  // The update reads the norm on the device and changes nothing when it is not finite.
  if (zero_) zero_->step(pending.norm.norm());
  else optimizer_->step_unless_nonfinite(pending.norm.norm());
  zero_grad();
  if (mark) mark(StepPhase::done);
  pending_.push_back(std::move(pending));
}

std::vector<StepResult> TrainingStep::read_results() {
  if (pending_.empty()) return {};
  const std::vector<PendingStep> steps = std::move(pending_);
  pending_.clear();
  // One read for every pending step: its loss share, then its squares and norm.
  std::vector<Tensor> parts;
  for (const PendingStep& p : steps) {
    parts.push_back(p.loss_share);
    parts.push_back(p.norm.values);
  }
  const std::vector<double> values = concat(parts, 0).to_vector<double>();
  // Every rank sums every step's loss over the group before any check, so all fail at the same step.
  std::vector<StepResult> results;
  std::vector<std::vector<double>> squares;
  const dist::ParallelState& ps = *parallel_;
  auto at = values.begin();
  for (const PendingStep& p : steps) {
    const int64_t n = p.norm.values.numel() - 1;
    const double share = at[0];
    squares.emplace_back(at + 1, at + 1 + n);
    results.push_back({p.step + 1, ps.distributed() ? ps.data_chunk().sum(share) : share, at[1 + n], p.lr});
    at += 2 + n;
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (!std::isfinite(results[i].loss)) fail_nonfinite_loss(steps[i].step, results[i].loss);
    if (!std::isfinite(results[i].grad_norm)) fail_nonfinite_norm(steps[i].step, results[i].grad_norm, squares[i]);
  }
  return results;
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

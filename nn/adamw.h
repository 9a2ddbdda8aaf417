#pragma once
// AdamW with decoupled weight decay, as torch.optim.AdamW (the formulas are in base/adamw_math.h).
// Parameters and their gradients are f32 (the master weights); both moments are f32 tensors on
// the parameter's device. On CUDA one fused multi-tensor launch updates every parameter (cuda/adamw.h),
// and writes the bf16 compute copy of each that has one (nn/compute_copy.h).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/adamw_math.h"
#include "nn/optimizer.h"

namespace mgl::nn {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // applied as p <- p (1 - lr wd), never through the gradient
  // Parameters (by state_dict name) that get no weight decay, e.g. norms and biases in recipes that
  // exempt them. Unset: every parameter decays, as in MEGALODON's recipe (docs/megalodon.md §5.1).
  std::function<bool(const std::string& name)> no_weight_decay;
};

// The per-step scalars of the update (base/adamw_math.h) for one parameter at its step `step` (1-based).
AdamWScalars adamw_scalars(const AdamWOptions& options, double weight_decay, int64_t step);
// Applies the update in place to every span (`count` contiguous f32 values of a parameter, or of a piece
// of one, with its gradient, moments and scalars): on the CPU a loop, on `device` one multi-tensor launch
// on its compute stream. The one update both AdamW and ZeroAdamW (nn/zero_adamw.h) use.
// skip_unless_finite (optional; one f64 on `device`, e.g. the global gradient norm): when its value is
// not finite nothing changes. It is read where it lies, so on CUDA the host does not wait for it.
void adamw_update_spans(const std::vector<AdamWSpan>& spans, const Device& device,
                        const Tensor& skip_unless_finite = {});
// Throws mgl::Error naming the first bad option.
void check_adamw_options(const AdamWOptions& options);

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Parameter> parameters, const AdamWOptions& options = {});

  void step() override;
  // step(), skipped on the device when `norm` (one f64 on the parameters' device, the gradient norm) is
  // not finite: the parameters and moments keep their values, without the host reading the norm. The
  // step counts are the host's and advance either way (a caller that skips stops the run when it reads
  // the norm, as apps/lib/training_step.h does).
  void step_unless_nonfinite(const Tensor& norm);

  // Mutable so that a learning-rate schedule can set options().lr before each step.
  AdamWOptions& options() { return options_; }
  // The state of parameter i: its step count t and moments m (exp_avg) and v (exp_avg_sq).
  int64_t step_count(size_t i) const { return state_.at(i).step; }
  const Tensor& exp_avg(size_t i) const { return state_.at(i).exp_avg; }
  const Tensor& exp_avg_sq(size_t i) const { return state_.at(i).exp_avg_sq; }
  // The index of the parameter named `name` (its state_dict name); throws naming it if absent.
  size_t index_of(const std::string& name) const;
  // Replaces the state of parameter i (restoring a checkpoint): the moments are copied in (any device
  // and dtype; shapes must equal the parameter's).
  void set_state(size_t i, int64_t step, const Tensor& exp_avg, const Tensor& exp_avg_sq);
  // Whether parameter i decays (options().weight_decay applies to it).
  bool decays(size_t i) const;

 private:
  struct State {
    int64_t step = 0;  // per parameter: one that got no gradient does not advance
    Tensor exp_avg, exp_avg_sq;
  };
  AdamWOptions options_;
  std::vector<State> state_;
};

}  // namespace mgl::nn

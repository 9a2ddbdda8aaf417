#pragma once
// Learning-rate schedules, the formulas of the official megalodon/optim/lr_scheduler.py
// (docs/megalodon.md §5.1): lr(s) is a pure function of the optimizer step s (0-based: the step about to
// be taken), warmup W, total S, start = init_ratio * peak, floor = min_lr_ratio * peak, u = (s - W) / (S - W):
//   warmup (s < W): lr = start + (peak - start) s / W           (every kind)
//   constant:       lr = peak
//   linear:         lr = floor + (peak - floor) (1 - u)          (the repository's default)
//   cosine:         lr = floor + (peak - floor) (1 + cos(pi u)) / 2   (the paper's 7B run)
//   after S:        lr = floor for the decaying kinds.
#include <cstdint>
#include <string>

namespace mgl::nn {

enum class LrDecay { constant, linear, cosine };

// "constant", "linear" or "cosine"; throws mgl::Error naming the known kinds.
LrDecay lr_decay_from_string(const std::string& name);

struct LrSchedule {
  LrDecay decay = LrDecay::cosine;
  double peak_lr = 3e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;     // warmup included
  double init_ratio = 0.0;     // start of the warmup / peak (the repository uses 1e-4)
  double min_lr_ratio = 0.0;   // floor / peak (the repository uses 0.01)

  // Throws mgl::Error naming the first bad field.
  void validate() const;
  double lr(int64_t step) const;
};

}  // namespace mgl::nn

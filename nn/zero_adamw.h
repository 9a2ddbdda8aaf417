#pragma once
// ZeroAdamW: AdamW with its moments sharded over the ranks that hold the same parameters, the data x
// chunk group (ZeRO stage 1, Rajbhandari et al. 2020; docs/parallelism.md). It works on the flat
// buckets of nn/grad_buckets.h built with sharded = true: after GradBuckets::finish() rank k holds
// piece k of each bucket's summed gradient; step() updates piece k of the flat parameter buffer with
// piece k of the moments (the same per-element update as AdamW, base/adamw_math.h, with each parameter's
// own weight decay and step count), then all-gathers the pieces so every rank holds all the updated
// parameters, and casts their bf16 compute copies again in one launch (nn/compute_copy.h). Optimizer
// memory per rank is 1 / (group size) of AdamW's.
#include <string>
#include <vector>

#include "nn/adamw.h"
#include "nn/grad_clip.h"
#include "nn/grad_buckets.h"
#include "nn/tensor_parallel.h"

namespace mgl::nn {

class ZeroAdamW {
 public:
  ZeroAdamW(GradBuckets& buckets, const AdamWOptions& options);

  AdamWOptions& options() { return options_; }
  // The global L2 norm of the summed gradient, on the device: this rank's pieces, squared and summed
  // over the group (and over the tensor group of a split model, each parameter counted once:
  // nn/grad_clip.h); its squares are those of this rank's parts, cut where parameters meet.
  GlobalNorm grad_norm(const TensorParallel& tp = {}) const;
  // The parameter of each part, in the order of grad_norm's squares.
  std::vector<std::string> grad_part_names() const;
  // Clips this rank's gradient pieces to max_norm, given the global norm on the device (clip_to_norm_).
  void clip_grads(const Tensor& norm, double max_norm);
  // One update. With `norm` (one f64 on the device) it is skipped on the device when the norm is not
  // finite, as AdamW::step_unless_nonfinite; the step counts advance either way.
  void step(const Tensor& norm = {});

  // Checkpoints hold whole moments: export_state gathers them into `full` (an AdamW over the same
  // parameters; collective over the group), import_state takes this rank's pieces from `full`.
  void export_state(AdamW& full) const;
  void import_state(const AdamW& full);

 private:
  bool decays(size_t parameter) const;
  // This rank's piece of each bucket's summed gradient, cut where parameters meet: a view per part and
  // the index of its parameter (the padding past the last parameter is left out).
  struct GradPart {
    Tensor values;
    size_t parameter = 0;
  };
  std::vector<GradPart> grad_parts() const;

  GradBuckets& buckets_;
  AdamWOptions options_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // per bucket: this rank's piece
  std::vector<int64_t> steps_;                // per parameter
};

}  // namespace mgl::nn

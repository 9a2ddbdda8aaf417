#include "nn/zero_adamw.h"

#include <algorithm>
#include <cmath>

#include "nn/compute_copy.h"
#include "nn/grad_clip.h"
#include "ops/ops.h"

namespace mgl::nn {

ZeroAdamW::ZeroAdamW(GradBuckets& buckets, const AdamWOptions& options)
    : buckets_(buckets), options_(options), steps_(buckets.parameters().size(), 0) {
  check_adamw_options(options_);
  MGL_CHECK(buckets_.sharded(), "ZeroAdamW needs buckets built with sharded = true");
  for (const GradBucket& b : buckets_.buckets()) {
    exp_avg_.push_back(Tensor::zeros(b.shard.shape(), DType::f32, b.shard.device()));
    exp_avg_sq_.push_back(Tensor::zeros(b.shard.shape(), DType::f32, b.shard.device()));
  }
}

bool ZeroAdamW::decays(size_t i) const {
  return !options_.no_weight_decay || !options_.no_weight_decay(buckets_.parameters()[i].name);
}

std::vector<ZeroAdamW::GradPart> ZeroAdamW::grad_parts() const {
  const dist::ProcessGroup& g = buckets_.group();
  std::vector<GradPart> parts;
  for (const GradBucket& b : buckets_.buckets()) {
    const int64_t begin = b.shard_begin(g.rank(), g.size()), end = begin + b.shard_size(g.size());
    for (size_t m = 0; m < b.members.size(); ++m) {
      const Parameter& p = buckets_.parameters()[b.members[m]];
      const int64_t first = std::max(begin, b.offsets[m]), last = std::min(end, b.offsets[m] + p.tensor.numel());
      if (first < last) parts.push_back({slice(b.shard, 0, first - begin, last - begin), b.members[m]});
    }
  }
  return parts;
}

GlobalNorm ZeroAdamW::grad_norm(const TensorParallel& tp) const {
  // Each part counts with its parameter's weight (nn/tensor_parallel.h norm_weight); the sum of the
  // weighted squares goes over the group that holds the other pieces, then over the tensor group.
  std::vector<Tensor> values;
  std::vector<double> weights;
  for (const GradPart& part : grad_parts()) {
    values.push_back(part.values);
    weights.push_back(norm_weight(buckets_.parameters()[part.parameter].sharding, tp));
  }
  return global_norm(values, weights, {&buckets_.group(), tp.split() ? &tp.group() : nullptr}, grad_part_names());
}

std::vector<std::string> ZeroAdamW::grad_part_names() const {
  std::vector<std::string> names;
  for (const GradPart& part : grad_parts()) names.push_back(buckets_.parameters()[part.parameter].name);
  return names;
}

void ZeroAdamW::clip_grads(const Tensor& norm, double max_norm) {
  std::vector<Tensor> shards;
  for (const GradBucket& b : buckets_.buckets()) shards.push_back(b.shard);
  clip_to_norm_(shards, norm, max_norm);
}

void ZeroAdamW::step(const Tensor& norm) {
  check_adamw_options(options_);
  for (int64_t& s : steps_) ++s;  // under data parallelism every parameter has a (possibly zero) gradient
  const dist::ProcessGroup& g = buckets_.group();
  std::vector<GradBucket>& buckets = buckets_.buckets();
  // Each member parameter's part of this rank's piece of every bucket, with that parameter's decay and
  // step: one span each, one update for all of them.
  std::vector<AdamWSpan> spans;
  for (size_t k = 0; k < buckets.size(); ++k) {
    GradBucket& b = buckets[k];
    const int64_t begin = b.shard_begin(g.rank(), g.size()), end = begin + b.shard_size(g.size());
    float* values = static_cast<float*>(b.values.raw_data());
    float* grad = static_cast<float*>(b.shard.raw_data());
    float* m = static_cast<float*>(exp_avg_[k].raw_data());
    float* v = static_cast<float*>(exp_avg_sq_[k].raw_data());
    for (size_t j = 0; j < b.members.size(); ++j) {
      const size_t i = b.members[j];
      const int64_t lo = std::max(begin, b.offsets[j]);
      const int64_t hi = std::min(end, b.offsets[j] + buckets_.parameters()[i].tensor.numel());
      if (lo >= hi) continue;
      const AdamWScalars scalars = adamw_scalars(options_, decays(i) ? options_.weight_decay : 0.0, steps_[i]);
      spans.push_back({values + lo, grad + (lo - begin), m + (lo - begin), v + (lo - begin), hi - lo, scalars});
    }
  }
  if (!buckets.empty()) adamw_update_spans(spans, buckets.front().values.device(), norm);
  // Every rank's updated piece to every rank, in place in the flat parameter buffers.
  std::vector<dist::WorkHandle> gathers;
  for (GradBucket& b : buckets) {
    const int64_t begin = b.shard_begin(g.rank(), g.size());
    const Tensor piece = contiguous(slice(b.values, 0, begin, begin + b.shard_size(g.size())));
    const Tensor mine = Tensor::empty(piece.shape(), DType::f32, piece.device());
    copy_(mine, piece);
    gathers.push_back(g.on(b.values.device()).all_gather(mine, b.values));
  }
  for (dist::WorkHandle& w : gathers) w->wait();
  // The parameters were written through pointers: their versions move on, and their bf16 compute copies
  // are cast again at once, all in one launch, rather than one cast per parameter in the next forward.
  std::vector<Tensor> parameters;
  for (GradBucket& b : buckets) b.values.bump_version();
  for (const Parameter& p : buckets_.parameters()) parameters.push_back(p.tensor);
  refresh_compute_copies(parameters);
}

void ZeroAdamW::export_state(AdamW& full) const {
  const dist::ProcessGroup& g = buckets_.group();
  const std::vector<GradBucket>& buckets = buckets_.buckets();
  for (size_t k = 0; k < buckets.size(); ++k) {
    const GradBucket& b = buckets[k];
    Tensor m = Tensor::empty({b.numel}, DType::f32, b.grad.device());
    Tensor v = Tensor::empty({b.numel}, DType::f32, b.grad.device());
    g.on(m.device()).all_gather(exp_avg_[k], m)->wait();
    g.on(v.device()).all_gather(exp_avg_sq_[k], v)->wait();
    for (size_t j = 0; j < b.members.size(); ++j) {
      const size_t i = b.members[j];
      const Tensor& p = buckets_.parameters()[i].tensor;
      const int64_t o = b.offsets[j];
      full.set_state(full.index_of(buckets_.parameters()[i].name), steps_[i],
                     reshape(slice(m, 0, o, o + p.numel()), p.shape()), reshape(slice(v, 0, o, o + p.numel()), p.shape()));
    }
  }
}

void ZeroAdamW::import_state(const AdamW& full) {
  const dist::ProcessGroup& g = buckets_.group();
  const std::vector<GradBucket>& buckets = buckets_.buckets();
  for (size_t k = 0; k < buckets.size(); ++k) {
    const GradBucket& b = buckets[k];
    const Device device = b.grad.device();
    Tensor m = Tensor::zeros({b.numel}, DType::f32, device);
    Tensor v = Tensor::zeros({b.numel}, DType::f32, device);
    for (size_t j = 0; j < b.members.size(); ++j) {
      const size_t i = b.members[j];
      const size_t f = full.index_of(buckets_.parameters()[i].name);
      const int64_t o = b.offsets[j], n = buckets_.parameters()[i].tensor.numel();
      copy_(slice(m, 0, o, o + n), reshape(full.exp_avg(f), {n}));
      copy_(slice(v, 0, o, o + n), reshape(full.exp_avg_sq(f), {n}));
      steps_[i] = full.step_count(f);
    }
    const int64_t begin = b.shard_begin(g.rank(), g.size()), size = b.shard_size(g.size());
    copy_(exp_avg_[k], slice(m, 0, begin, begin + size));
    copy_(exp_avg_sq_[k], slice(v, 0, begin, begin + size));
  }
}

}  // namespace mgl::nn

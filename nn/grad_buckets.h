#pragma once
// Data-parallel gradient reduction in buckets, overlapped with backward (docs/parallelism.md, "Data
// parallelism"), as PyTorch's DistributedDataParallel and llm.c do it.
//
// The parameters (f32 masters, one device) are grouped, in reverse registration order (roughly the
// order backward finishes them), into buckets of about `bucket_bytes`. Each bucket is one flat f32
// gradient buffer, and every parameter's .grad is a view into it, so backward accumulates straight
// into the buffer. A parameter's post-accumulate hook counts it as ready; when a bucket is complete its
// reduction starts at once, while backward goes on with the layers below, and the buckets are always
// launched in index order (every rank of the group must issue its collectives in the same order).
// finish() waits for all of them.
//
// The reduction is a sum over `group` (the ranks holding the same parameters: data x chunk). The loss
// each rank differentiates is its share of the global mean (its tokens' loss divided by the token count
// of the whole global batch), so the summed gradient is exactly the single-process gradient.
// With ZeRO-1 the buckets are reduce-scattered instead: rank k gets piece k of each bucket (nn/zero_adamw.h
// updates only that piece) and the parameters live in flat buffers too, so the updated pieces are
// all-gathered in place.
#include <cstdint>
#include <vector>

#include "dist/parallel_state.h"
#include "nn/module.h"

namespace mgl::nn {

struct GradBucket {
  std::vector<size_t> members;   // indices into the parameter list
  std::vector<int64_t> offsets;  // element offset of each member in the flat buffers
  int64_t numel = 0;             // padded to a multiple of the group size
  Tensor grad;                   // f32 [numel]
  Tensor shard;                  // ZeRO: this rank's reduced piece, f32 [numel / group size]
  Tensor values;                 // ZeRO: the parameters' own storage, f32 [numel]
  int ready = 0;
  dist::WorkHandle work;

  int64_t shard_begin(int rank, int size) const { return numel / size * rank; }
  int64_t shard_size(int size) const { return numel / size; }
};

class GradBuckets {
 public:
  // Parameters must be contiguous f32 leaves on one device. `sharded` (ZeRO-1) moves every parameter's
  // storage into its bucket's flat value buffer (handles stay valid).
  GradBuckets(std::vector<Parameter> parameters, const dist::ProcessGroup& group, int64_t bucket_bytes, bool sharded);
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  // Zeroes every gradient buffer and re-attaches the .grad views (instead of Module::zero_grad).
  void zero_grad();
  // Whether the next backward completes the step's gradient (the last micro-batch): only then do the
  // hooks start reductions; earlier micro-batches accumulate locally.
  void set_sync(bool sync) { sync_ = sync; }
  // Starts whatever the hooks have not (buckets with a parameter backward did not reach) and waits for
  // every reduction. After it: plain DP, every .grad holds the group's sum; ZeRO, every bucket's shard.
  void finish();

  const std::vector<Parameter>& parameters() const { return parameters_; }
  std::vector<GradBucket>& buckets() { return buckets_; }
  const dist::ProcessGroup& group() const { return group_; }
  bool sharded() const { return sharded_; }

 private:
  void on_ready(size_t bucket);
  void launch_ready();
  void launch(GradBucket& b);

  std::vector<Parameter> parameters_;
  const dist::ProcessGroup& group_;
  bool sharded_;
  bool sync_ = true;
  std::vector<GradBucket> buckets_;
  size_t next_launch_ = 0;
};

}  // namespace mgl::nn

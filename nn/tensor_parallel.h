#pragma once
// Tensor parallelism for a MEGALODON model (docs/parallelism.md, "Tensor parallelism";
// docs/megalodon.md §7.2): the residual stream is split along its channels D over the tensor group,
// so TimestepNorm and CEMA, which act channel by channel (and group by group), run on each rank's
// D/TP channels with no communication at all. Only the parts that mix channels communicate:
//
//   where                          forward               backward              pair (dist/mappings.h)
//   U -> RMSNorm, Ŷ -> LayerNorm   all-gather along D    keep own piece        gather_from_group
//   M, LayerNorm(Ŷ) -> columns     identity              all-reduce            copy_to_group
//   T -> wv (columns)              all-gather along D    reduce-scatter        all_gather
//   wh2, fc2 (rows)                reduce-scatter to D   all-gather            reduce_scatter
//   final norm -> vocab-split head all-gather along D    reduce-scatter        all_gather
//   tied head (rows over D)        all-reduce logits     identity              reduce_from_group
//
// "keep own piece" is exact because its consumer's input gradient is already the same on every rank:
// RMSNorm and LayerNorm run replicated on the gathered input and their outputs reach the
// column-parallel linears through copy_to_group, whose backward sums the linears' partial gradients.
//
// A model is built whole (so its initialisation does not depend on TP, as in the official code) and
// then each parameter is cut to this rank's piece along its Sharding (nn/module.h).
#include <cstdint>

#include "dist/mappings.h"
#include "nn/megalodon_config.h"
#include "nn/module.h"

namespace mgl::nn {

// The tensor group a model is split over; no group (the default): not split. Each communication is the
// identity on one rank, so the layers' code reads the same at every TP size.
class TensorParallel {
 public:
  TensorParallel() = default;
  explicit TensorParallel(const dist::ProcessGroup& group) : group_(&group) {}

  int64_t size() const { return group_ ? group_->size() : 1; }
  int64_t rank() const { return group_ ? group_->rank() : 0; }
  bool split() const { return size() > 1; }
  const dist::ProcessGroup& group() const;

  // The pairs of the table above.
  Tensor gather_replicated(const Tensor& x, int64_t dim) const;  // all-gather | keep own piece
  Tensor copy_in(const Tensor& x) const;                         // identity | all-reduce
  Tensor gather(const Tensor& x, int64_t dim) const;             // all-gather | reduce-scatter
  Tensor reduce_scatter(const Tensor& x, int64_t dim) const;     // reduce-scatter | all-gather
  Tensor reduce(const Tensor& x) const;                          // all-reduce | identity
  double sum(double value) const;                                // a host number summed over the group

 private:
  const dist::ProcessGroup* group_ = nullptr;
};

// Throws one mgl::Error naming every size of `config` that does not split over `tp` ranks (D, H, Z, V,
// F, G; the vocabulary too when the head is not tied, since it is then split by vocabulary).
void check_tensor_parallel_sizes(const MegalodonConfig& config, int64_t tp);

// This rank's piece of a whole tensor under `sharding` (the whole tensor itself when replicated).
Tensor piece_of(const Tensor& whole, const Sharding& sharding, int64_t rank, int64_t size);
// The whole tensor from every rank's piece: an all-gather over tp's group (collective), or `piece`
// itself when replicated or not split.
Tensor whole_of(const Tensor& piece, const Sharding& sharding, const TensorParallel& tp);

// Replaces each sharded parameter of `module` by this rank's piece, in place (the parameters' handles
// stay valid, as with Module::to). Call once, on the whole model, before building optimizers.
void shard_parameters(const Module& module, const TensorParallel& tp);

// The weight of a parameter's squared gradient in the global norm, summed over the tensor group: 1 for
// a shard (each rank holds a different one), 1/TP for a replicated parameter (every rank holds the
// same gradient), so the sum over the group counts every parameter once. (The official code sums the
// replicated ones TP times.)
double norm_weight(const Sharding& sharding, const TensorParallel& tp);

}  // namespace mgl::nn

#include "nn/tensor_parallel.h"

#include <string>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace mgl::nn {

const dist::ProcessGroup& TensorParallel::group() const {
  MGL_CHECK(group_, "TensorParallel: the model is not split over a tensor group");
  return *group_;
}

Tensor TensorParallel::gather_replicated(const Tensor& x, int64_t dim) const {
  return split() ? dist::gather_from_group(x, *group_, dim) : x;
}

Tensor TensorParallel::copy_in(const Tensor& x) const { return split() ? dist::copy_to_group(x, *group_) : x; }

Tensor TensorParallel::gather(const Tensor& x, int64_t dim) const {
  return split() ? dist::all_gather(x, *group_, dim) : x;
}

Tensor TensorParallel::reduce_scatter(const Tensor& x, int64_t dim) const {
  return split() ? dist::reduce_scatter(x, *group_, dim) : x;
}

Tensor TensorParallel::reduce(const Tensor& x) const { return split() ? dist::reduce_from_group(x, *group_) : x; }

double TensorParallel::sum(double value) const { return split() ? group_->sum(value) : value; }

void check_tensor_parallel_sizes(const MegalodonConfig& c, int64_t tp) {
  MGL_CHECK(tp >= 1, "tensor parallelism: the group size must be >= 1, got ", tp);
  std::vector<std::pair<std::string, int64_t>> sizes = {
      {"model.model_dim (D)", c.model_dim},      {"model.num_heads (H)", c.num_heads},
      {"model.z_dim (Z)", c.z_dim},              {"model.value_dim (V)", c.value_dim},
      {"model.ffn_hidden_dim (F)", c.ffn_hidden_dim}, {"model.norm_num_groups (G)", c.norm_num_groups}};
  // An untied head is split by vocabulary (nn/megalodon.h); a tied one shares the embedding's split of D.
  if (!c.share_embedding) sizes.emplace_back("model.vocab_size (untied head)", c.vocab_size);
  std::string bad;
  for (const auto& [name, size] : sizes)
    if (size % tp != 0) bad += (bad.empty() ? "" : ", ") + name + " = " + std::to_string(size);
  MGL_CHECK(bad.empty(), "parallel.tensor = ", tp, " must divide ", bad);
}

Tensor piece_of(const Tensor& whole, const Sharding& sharding, int64_t rank, int64_t size) {
  if (sharding.replicated() || size == 1) return whole;
  const int64_t full = whole.size(sharding.dim);
  MGL_CHECK(full % size == 0, "piece_of: dim ", sharding.dim, " of ", whole.describe(), " does not split into ", size,
            " equal pieces");
  const int64_t n = full / size;
  return contiguous(slice(whole, sharding.dim, rank * n, (rank + 1) * n));
}

Tensor whole_of(const Tensor& piece, const Sharding& sharding, const TensorParallel& tp) {
  if (sharding.replicated() || !tp.split()) return piece;
  NoGradGuard no_grad;
  return dist::gather_from_group(piece, tp.group(), sharding.dim);
}

void shard_parameters(const Module& module, const TensorParallel& tp) {
  if (!tp.split()) return;
  NoGradGuard no_grad;
  for (const Parameter& p : module.named_parameters()) {
    if (p.sharding.replicated()) continue;
    MGL_CHECK(!p.tensor.grad().defined(), "shard_parameters: parameter '", p.name, "' already has a gradient");
    replace_values(p.tensor, piece_of(p.tensor, p.sharding, tp.rank(), tp.size()), p.tensor.device());
  }
}

double norm_weight(const Sharding& sharding, const TensorParallel& tp) {
  return sharding.replicated() ? 1.0 / static_cast<double>(tp.size()) : 1.0;
}

}  // namespace mgl::nn

#include "nn/mega_attention.h"

#include <cmath>

#include "nn/compute_copy.h"
#include "ops/chunk_attention.h"
#include "ops/ops.h"
#include "ops/rope.h"

namespace mgl::nn {

MovingAverageGatedAttention::MovingAverageGatedAttention(const MegalodonConfig& config, const InitOptions& options,
                                                         const TensorParallel& tp)
    : config_(config), tp_(tp) {
  const int64_t D = config.model_dim, Z = config.z_dim, V = config.value_dim;
  timenorm_ = register_module("timenorm", std::make_shared<TimestepNorm>(D, config.norm_num_groups, config.norm_eps, options));
  cema_ = register_module("cema", std::make_shared<Cema>(D, config.cema_ndim, options));
  if (config.norm_affine) {
    auto rmsnorm = std::make_shared<Module>();
    rmsnorm_weight_ = rmsnorm->register_parameter("weight", init::zeros({D}, options));
    register_module("rmsnorm", rmsnorm);
  }
  // Linear's default init is normal(0, 1/sqrt(3 fan_in)), the "He" init of docs/megalodon.md §2.5.1.
  wz_ = register_module("wz", std::make_shared<Linear>(D, Z, true, options, LinearSplit::columns));
  wv_ = register_module("wv", std::make_shared<Linear>(D, V, true, options, LinearSplit::columns));
  wr_ = register_module("wr", std::make_shared<Linear>(D, V, true, options, LinearSplit::columns));
  wh1_ = register_module("wh1", std::make_shared<Linear>(D, D, true, options, LinearSplit::columns));
  wh2_ = register_module("wh2", std::make_shared<Linear>(V, D, false, options, LinearSplit::rows));
  gamma_ = register_parameter("gamma", init::zeros({2, Z}, options), {1});
  beta_ = register_parameter("beta", init::zeros({2, Z}, options), {1});
}

Tensor MovingAverageGatedAttention::forward(const Tensor& x, const LayerState* incoming, LayerState* outgoing,
                                            const StateHandoff* handoff) const {
  const int64_t channels = config_.model_dim / tp_.size();
  MGL_CHECK(x.dim() == 3 && x.size(2) == channels, "MovingAverageGatedAttention: expected x [B, L, ", channels,
            "], got ", x.describe());
  const int64_t B = x.size(0), L = x.size(1), H = config_.num_heads / tp_.size();  // this rank's heads
  const int64_t dz = config_.head_z_dim(), dv = config_.head_value_dim();
  const bool training = is_training();

  const Tensor t = timenorm_->forward(x, incoming ? &incoming->norm : nullptr, outgoing ? &outgoing->norm : nullptr);
  Tensor u = cema_->forward(t, incoming ? incoming->cema : Tensor(), outgoing ? &outgoing->cema : nullptr);
  if (handoff) {
    MGL_CHECK(outgoing, "MovingAverageGatedAttention: a state handoff needs the outgoing state");
    u = (*handoff)(*outgoing, u);
  }
  // RMSNorm needs every channel: it runs replicated on the gathered U. The three column-parallel
  // layers reading M share one all-reduce of dM in backward (copy_in).
  u = tp_.gather_replicated(u, 2);
  Tensor m = rms_norm(u, rmsnorm_weight_.defined() ? cast(add(rmsnorm_weight_, 1.0), u.dtype()) : Tensor(),
                      config_.norm_eps);
  m = tp_.copy_in(dropout(m, config_.hidden_dropout, training));

  // Queries and keys: per-head unit RMS, then a learned per-dimension scale and offset each. The offset is a
  // row of beta's compute copy (nn/compute_copy.h); the scale, an expression of gamma formed in f32, is cast
  // at use, as RMSNorm's 1 + w above is.
  const Tensor z = rms_norm(reshape(wz_->forward(m), {B, L, H, dz}), Tensor(), config_.norm_eps);
  auto affine = [&](int64_t row) {
    const Tensor scale = reshape(mul(add(slice(gamma_, 0, row, row + 1), 1.0), 1.0 / std::sqrt(double(dz))), {H, dz});
    const Tensor offset = reshape(slice(compute_copy(beta_, z.dtype()), 0, row, row + 1), {H, dz});
    return add(mul(z, cast(scale, z.dtype())), offset);
  };
  const Tensor q = affine(0), k = affine(1);
  const Tensor v = reshape(silu(wv_->forward(tp_.gather(t, 2))), {B, L, H, dv});
  const Tensor gate = wr_->forward(m);  // R = silu(gate), applied in the fused product below

  const Tensor o = reshape(attention(q, k, v, incoming, outgoing), {B, L, H * dv});
  const Tensor a = dropout(silu_mul(gate, o), config_.hidden_dropout, training);  // O ⊙ R in one pass
  const Tensor h = dropout(add(wh1_->forward(m), tp_.reduce_scatter(wh2_->forward(a), 2)), config_.dropout, training);
  return add(h, x);
}

Tensor MovingAverageGatedAttention::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const LayerState* incoming, LayerState* outgoing) const {
  const int64_t c = config_.chunk_size, L = q.size(1);
  const int64_t cached = incoming ? incoming->cached_tokens() : 0;
  MGL_CHECK(cached < c, "MovingAverageGatedAttention: the KV cache holds ", cached, " tokens, a chunk only ", c);
  AttentionOptions options;
  options.dropout = is_training() ? config_.attention_dropout : 0.0;
  // MegalodonConfig::validate() admits "dropout" (on the probabilities) and "dropkey" (on the logits, §2.5.5).
  options.dropout_kind =
      config_.attention_dropout_kind == "dropkey" ? AttentionDropout::keys : AttentionDropout::probabilities;
  auto rotate = [&](const Tensor& x, int64_t start) { return rope(x, c, start, config_.rope_base); };

  std::vector<Tensor> outputs;
  Tensor last_keys, last_values;  // the partial chunk this call ends in
  int64_t t = 0;
  if (cached > 0) {
    // Finish the chunk the cache started: keys and values are the cached ones followed by ours.
    const int64_t n = std::min(L, c - cached);
    const Tensor keys = concat({incoming->keys, rotate(slice(k, 1, 0, n), cached)}, 1);
    const Tensor values = concat({incoming->values, slice(v, 1, 0, n)}, 1);
    outputs.push_back(chunk_attention_cached(rotate(slice(q, 1, 0, n), cached), keys, values, options));
    if (cached + n < c) last_keys = keys, last_values = values;
    t = n;
  }
  // Whole chunks, then the start of the next one; RoPE positions restart at every chunk boundary.
  const int64_t whole = (L - t) / c * c;
  for (const auto& [start, length] : {std::pair{t, whole}, std::pair{t + whole, L - t - whole}}) {
    if (length == 0) continue;
    const Tensor keys = rotate(slice(k, 1, start, start + length), 0);
    const Tensor values = slice(v, 1, start, start + length);
    outputs.push_back(chunk_attention(rotate(slice(q, 1, start, start + length), 0), keys, values, c, options));
    if (length < c) last_keys = keys, last_values = values;
  }
  if (outgoing) {
    outgoing->keys = last_keys;
    outgoing->values = last_values;
  }
  return outputs.size() == 1 ? outputs[0] : concat(outputs, 1);
}

}  // namespace mgl::nn

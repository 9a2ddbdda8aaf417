#include "nn/chunk_parallel.h"

#include "ops/ops.h"

namespace mgl::nn {

ChunkRelay::ChunkRelay(const dist::ParallelState& parallel, int64_t batch, int64_t piece_length, int64_t model_dim,
                       int64_t norm_groups, int64_t cema_modes, DType state_dtype, Device device)
    : group_(parallel.chunk()),
      prev_(parallel.chunk_prev()),
      next_(parallel.chunk_next()),
      batch_(batch),
      piece_length_(piece_length),
      model_dim_(model_dim),
      groups_(norm_groups),
      modes_(cema_modes),
      chunk_rank_(parallel.coordinates().chunk),
      dtype_(state_dtype),
      device_(device) {}

int64_t ChunkRelay::flat_size(bool with_cema) const {
  return batch_ * (2 * groups_ + (with_cema ? model_dim_ * modes_ * 2 : 0));
}

// One buffer per block and sequence batch: [mean (B*G) | var (B*G) | h (B*D*N*2)], in the state dtype.
Tensor flatten_layer_state(const LayerState& state, bool with_cema) {
  std::vector<Tensor> parts = {reshape(state.norm.mean, {-1}), reshape(state.norm.var, {-1})};
  if (with_cema) parts.push_back(reshape(state.cema, {-1}));
  return concat(parts, 0);
}

Tensor ChunkRelay::pack(const LayerState& state, bool with_cema) const {
  const Tensor flat = cast(flatten_layer_state(state, with_cema), dtype_);
  MGL_CHECK(flat.numel() == flat_size(with_cema), "ChunkRelay: a state of ", flat.numel(), " values, expected ",
            flat_size(with_cema));
  return flat;
}

LayerState ChunkRelay::unpack(const Tensor& flat, bool with_cema) const {
  const int64_t bg = batch_ * groups_;
  LayerState s;
  // Every sequence has absorbed the r * L tokens of the pieces before this one.
  s.norm.count = to(Tensor::full({batch_}, static_cast<double>(chunk_rank_ * piece_length_), DType::i64), device_);
  s.norm.mean = reshape(slice(flat, 0, 0, bg), {batch_, groups_});
  s.norm.var = reshape(slice(flat, 0, bg, 2 * bg), {batch_, groups_});
  if (with_cema) s.cema = reshape(slice(flat, 0, 2 * bg, flat.numel()), {batch_, model_dim_, modes_, 2});
  return s;
}

Tensor ChunkRelay::receive_flat(int64_t layer, bool with_cema) {
  MGL_CHECK(receives(), "ChunkRelay::receive on the first rank of the chunk group");
  const Tensor flat = dist::receive_state({flat_size(with_cema)}, dtype_, device_, group_, prev_,
                                          static_cast<int>(layer), pending_);
  received_.push_back(flat);
  return flat;
}

LayerState ChunkRelay::receive(int64_t layer, bool with_cema) { return unpack(receive_flat(layer, with_cema), with_cema); }

Tensor ChunkRelay::send(int64_t layer, const LayerState& state, const Tensor& carrier, bool with_cema) {
  MGL_CHECK(sends(), "ChunkRelay::send on the last rank of the chunk group");
  return dist::send_state(carrier, pack(state, with_cema), group_, next_, static_cast<int>(layer), pending_);
}

void ChunkRelay::send_values(int64_t layer, const Tensor& flat) {
  MGL_CHECK(sends(), "ChunkRelay::send on the last rank of the chunk group");
  dist::send_values(flat, group_, next_, static_cast<int>(layer), pending_);
}

Tensor ChunkRelay::attach_gradient(int64_t layer, const Tensor& flat, const Tensor& carrier) {
  MGL_CHECK(sends(), "ChunkRelay::send on the last rank of the chunk group");
  return dist::receive_gradient(carrier, flat, group_, next_, static_cast<int>(layer));
}

}  // namespace mgl::nn

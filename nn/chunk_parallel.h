#pragma once
// Chunk (sequence) parallelism for a MEGALODON model (docs/parallelism.md, "Chunk parallelism").
//
// A sequence of CP * L tokens is cut into CP contiguous pieces of L; chunk-group rank r runs the model
// on piece r. Attention is chunk-local (L is a multiple of the chunk size), so the only dependence
// between pieces is the state each block's TimestepNorm and CEMA carry from token to token, and the
// final TimestepNorm's. ChunkRelay moves exactly that:
//   forward:  before block i, rank r > 0 receives block i's state as rank r-1 left it: the norm's
//             (mean, var) per group and CEMA's h, one buffer per block (the count is not sent: it is
//             r * L for every sequence, since training has no padding); rank r < CP-1 sends its own
//             right after its TimestepNorm + CEMA, before its attention and FFN, so the next rank can
//             start while this one works (a skewed pipeline, not a chain of whole blocks);
//   backward: the gradient of each received state goes back (dist::receive_state), and each sent
//             state's gradient is received just before this rank's CEMA backward needs it
//             (dist::send_state, carried by the CEMA output).
// The result is exactly the single-process forward and backward over the whole sequence.
#include <memory>

#include "dist/mappings.h"
#include "nn/megalodon_state.h"

namespace mgl::nn {

// A block's carried state as one flat tensor, [mean (B*G) | var (B*G) | h (B*D*N*2)] (h only when
// with_cema: the final norm has none), differentiable: the buffer chunk parallelism and the pipelined
// scoring (apps/lib/parallel_scoring.h) pass between ranks. The count travels apart, or not at all.
Tensor flatten_layer_state(const LayerState& state, bool with_cema);

class ChunkRelay {
 public:
  // `piece_length` L: tokens per rank; `state_dtype`: the dtype of the carried statistics (f32, or f64
  // for f64 activations).
  ChunkRelay(const dist::ParallelState& parallel, int64_t batch, int64_t piece_length, int64_t model_dim,
             int64_t norm_groups, int64_t cema_modes, DType state_dtype, Device device);

  bool receives() const { return prev_ >= 0; }
  bool sends() const { return next_ >= 0; }
  // The state block `layer` starts from (layer == number of blocks: the final norm, no CEMA state),
  // received from the previous rank. Only when receives().
  LayerState receive(int64_t layer, bool with_cema);
  // Sends `state` (norm and, with_cema, CEMA) to the next rank and returns `carrier` (see
  // dist::send_state). Only when sends().
  Tensor send(int64_t layer, const LayerState& state, const Tensor& carrier, bool with_cema);

  // The same exchange for a block under activation recomputation (Megalodon::forward), where the
  // state is formed inside a recomputed function: the received state as one flat tensor (the
  // function's input), a state's values sent from inside the function's first run, and the flat
  // outgoing state (the function's output) tied to the block's output, whose backward receives that
  // state's gradient from the next rank.
  Tensor receive_flat(int64_t layer, bool with_cema);
  LayerState unpack(const Tensor& flat, bool with_cema) const;
  Tensor pack(const LayerState& state, bool with_cema) const;
  void send_values(int64_t layer, const Tensor& flat);
  Tensor attach_gradient(int64_t layer, const Tensor& flat, const Tensor& carrier);
  // Waits for every send of this step (forward states, backward gradients): call after backward.
  void finish() { pending_.wait_all(); }
  // The flat state buffers received so far, by layer ([mean | var | h], see receive()); each requires
  // grad in training, so a hook on it sees the gradient this rank sends back.
  const std::vector<Tensor>& received() const { return received_; }

 private:
  int64_t flat_size(bool with_cema) const;

  const dist::ProcessGroup& group_;
  int prev_, next_;
  int64_t batch_, piece_length_, model_dim_, groups_, modes_;
  int64_t chunk_rank_;
  DType dtype_;
  Device device_;
  dist::PendingWork pending_;
  std::vector<Tensor> received_;
};

}  // namespace mgl::nn

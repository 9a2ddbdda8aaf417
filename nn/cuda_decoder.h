#pragma once
// CudaDecoder: token-by-token generation with a MEGALODON model on one GPU, for a fixed batch of B
// sequences (docs/decode.md). Megalodon::forward can decode too (one token per call with a
// ModelState), but it allocates every intermediate and launches hundreds of small kernels per token;
// this class instead
//   * copies the weights once, in the compute dtype (bf16 weights for bf16 decoding),
//   * preallocates every buffer of a step: per layer the streaming state (TimestepNorm statistics,
//     CEMA state [B, D, N, 2] f32, the keys and values of one chunk [B, c, H, dz] / [B, c, H, dv]),
//     one step's activations (f32), the logits [B, vocab] f32 and the input ids [B] — so memory does
//     not depend on the context length and a step allocates nothing;
//   * runs a step as a few fused kernels per layer (cuda/decode_*.h) that read the per-token values
//     (ids, the position in the chunk) from device memory, so the whole step is captured once as a
//     CUDA graph and replayed per token with one launch and no host synchronisation.
// The math is Megalodon::forward's, in eval mode (no dropout): a decoded token gives the logits and
// the state that forward() gives for it, up to rounding (activations stay f32 between the kernels,
// where forward() rounds each op's output to the compute dtype).
#include <cstdint>
#include <memory>
#include <vector>

#include "nn/megalodon.h"

namespace mgl::cuda {
struct DecodeGraph;
struct HostMirror;
}

namespace mgl::nn {

struct DecoderOptions {
  Device device = Device::cuda(0);
  // Replay one captured CUDA graph per step; false: launch the kernels one by one (for debugging
  // and profiling; the results are identical).
  bool use_graph = true;
};

class CudaDecoder {
 public:
  // Copies the parameters of `model` (found by their state_dict names, on any device) and starts
  // with an empty state (as before a sequence's first token). compute_dtype: f32 or bf16.
  CudaDecoder(const Megalodon& model, int64_t batch, DType compute_dtype, const DecoderOptions& options = {});
  ~CudaDecoder();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  // Back to the empty state: TimestepNorm priors, zero CEMA states, empty KV caches.
  void reset();
  // Continues sequences from a state of Megalodon::forward (e.g. after a prefill over the prompt);
  // an empty state is reset(). Synchronises (it is not part of the per-token path).
  void import_state(const ModelState& state);
  // The current state, as Megalodon::forward would return it (on the decoder's device; keys and
  // values in the compute dtype). Synchronises.
  ModelState export_state() const;

  // The device buffer of token ids [B] (i64) the next step reads: a sampler on the device may write
  // it directly.
  const Tensor& ids() const { return ids_; }
  // Decodes one token per sequence from ids(): returns the logits [B, vocab] (f32, a view of the
  // decoder's buffer, overwritten by the next step). Enqueued on the device's compute stream; nothing
  // waits for it.
  const Tensor& step();
  // Copies `ids` [B] (i64, host or device) into ids() asynchronously, then step().
  const Tensor& step(const Tensor& ids);
  const Tensor& logits() const { return logits_; }

  // Greedy selection on the device (cuda/decode_greedy.h): from now on every step also chooses the
  // next token of each sequence, the arg max of its logits after the repetition penalty (as
  // apps::Sampler's greedy choice), and writes it to ids(), so that the next step() continues from it
  // without the host. seen[b] lists the ids the penalty starts with (the prompt); each choice is added
  // as it is made. Only ids [0, choices) may be chosen (0: the whole vocabulary). Re-captures the
  // graph; synchronises.
  void select_greedily(double repetition_penalty, int64_t choices, const std::vector<std::vector<int32_t>>& seen);
  bool selects_greedily() const { return seen_.defined(); }
  // Enqueues a copy of ids() into pinned host memory (after the steps enqueued so far);
  // ids_on_host() waits for the newest such copy only, not for later steps, and returns it.
  void copy_ids_to_host();
  std::vector<int64_t> ids_on_host() const;

  // Tokens of the current, incomplete attention chunk (the KV cache length), in [0, chunk_size).
  int64_t position() const { return position_; }
  int64_t batch() const { return batch_; }
  DType compute_dtype() const { return dtype_; }
  const Device& device() const { return device_; }
  bool uses_graph() const { return graph_ != nullptr; }

  // The kinds of launch in a step, in the order a step runs them (per layer, then the head); also for
  // timing them one kind at a time (bench_decode --breakdown).
  enum class Launch { norm_cema, projections, attention, attention_out, ffn_in, ffn_out, head };
  static constexpr Launch kLaunches[] = {Launch::norm_cema, Launch::projections, Launch::attention,
                                         Launch::attention_out, Launch::ffn_in, Launch::ffn_out, Launch::head};
  static const char* launch_name(Launch kind);
  // Launches of one kind for every layer (head: the final norm and the LM head), on the compute
  // stream, without the rest of the step. For benchmarks only: the buffers and the state then hold
  // meaningless values, so reset() or import_state() before decoding again.
  void record_launches(Launch kind) const;

 private:
  struct NormState;
  struct Layer;
  void record_step() const;  // the launches of one step, on the compute stream
  void record_launch(const Layer& layer, Launch kind) const;  // one per-layer launch (not the head)
  void record_head() const;  // the final TimestepNorm step and the LM head
  void capture();           // (re)captures the graph of record_step()
  void import_norm(NormState& norm, const TimestepNormState& state);
  TimestepNormState export_norm(const NormState& norm) const;

  MegalodonConfig config_;
  int64_t batch_;
  DType dtype_;
  Device device_;
  float embed_scale_ = 1.0f;
  Tensor embed_, head_;  // [vocab, D] in the compute dtype (the same tensor when tied)
  std::vector<Layer> layers_;
  std::unique_ptr<NormState> final_norm_;
  // One step's activations, shared by the layers (they run one after the other), all f32.
  Tensor x_, t_, u_, z_, r_, h1_, v_, a_, y_hat_, g_, logits_;
  // The attention's scratch (cuda/decode_attention.h) and RoPE frequencies [dz / 2].
  Tensor partial_, split_stats_, rope_frequencies_;
  Tensor ids_;       // [B] i64
  Tensor position_device_;  // [1] i32: the position the kernels read
  int64_t position_ = 0;    // its host copy (advanced in step(), never read back)
  double repetition_penalty_ = 1.0;
  int64_t choices_ = 0;
  Tensor seen_;  // [B, vocab] i32: the ids the repetition penalty applies to; defined once selecting greedily
  cuda::HostMirror* ids_mirror_ = nullptr;
  bool use_graph_ = true;
  cuda::DecodeGraph* graph_ = nullptr;
};

}  // namespace mgl::nn

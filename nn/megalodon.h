#pragma once
// The MEGALODON language model (docs/megalodon.md §1, §3): embedding → blocks → final TimestepNorm →
// LM head. Parameter names and shapes equal the official implementation's state_dict, so weights move
// between the two without a mapping table (embed.weight, layers.3.mega.cema.alpha, output.output.weight, ...).
//
// Split over a tensor group (nn/tensor_parallel.h), each rank holds the pieces of every parameter named
// by its Sharding and the residual stream's D/TP channels; the untied head is split by vocabulary, so
// forward returns this rank's slice of the logits and token_loss is the vocabulary-parallel
// cross-entropy, which never forms the whole logits on one rank. The tied head is the embedding's
// split of D: its partial logits are all-reduced.
#include "nn/chunk_parallel.h"
#include "nn/embedding.h"
#include "nn/mega_attention.h"
#include "nn/normalized_ffn.h"

namespace mgl::nn {

// One block: Ŷ = mega(X); Y = nffn(Ŷ, X).
class MegalodonBlock : public Module {
 public:
  MegalodonBlock(const MegalodonConfig& config, int64_t layer_index, const InitOptions& options = {},
                 const TensorParallel& tp = {});
  Tensor forward(const Tensor& x, const LayerState* incoming = nullptr, LayerState* outgoing = nullptr,
                 const StateHandoff* handoff = nullptr) const;
  const MovingAverageGatedAttention& mega() const { return *mega_; }
  const NormalizedFeedForward& nffn() const { return *nffn_; }

 private:
  std::shared_ptr<MovingAverageGatedAttention> mega_;
  std::shared_ptr<NormalizedFeedForward> nffn_;
};

// Final TimestepNorm and the vocabulary projection (absent when tied to the embedding).
class OutputLayer : public Module {
 public:
  OutputLayer(const MegalodonConfig& config, const InitOptions& options = {});  // the head split by vocabulary
  std::shared_ptr<TimestepNorm> final_norm;
  std::shared_ptr<Linear> output;  // null when the head is tied
};

class Megalodon : public Module {
 public:
  // Built whole (the same initial values at every TP size), then cut to this rank's pieces when `tp`
  // splits it; the config's sizes must divide over tp (check_tensor_parallel_sizes).
  explicit Megalodon(const MegalodonConfig& config, const InitOptions& options = {}, const TensorParallel& tp = {});

  // ids [B, L] (i32/i64) -> logits [B, L, vocab] in f32 (this rank's vocab/TP slice when the untied
  // head is split). `incoming`/`outgoing` carry the streaming
  // state between calls (see megalodon_state.h); pass neither to process independent sequences.
  // The ids may be on the model's device or on the CPU, where the embedding reads them without waiting
  // for the device (ops/ops.h embedding); the same holds for the targets of loss() and token_loss().
  Tensor forward(const Tensor& ids, const ModelState* incoming = nullptr, ModelState* outgoing = nullptr) const;
  // The forward of piece r of sequences split over a chunk group (nn/chunk_parallel.h): every block
  // and the final norm start from the state `relay` receives from rank r-1 and hand theirs to rank
  // r+1. ids [B, L] are this rank's L tokens of each sequence. Returns this piece's logits. With
  // config().activation_checkpointing each block keeps only its input and recomputes in backward.
  Tensor forward(const Tensor& ids, ChunkRelay& relay) const;
  // The windowed TimestepNorm mode of the official inference code (docs/megalodon.md §6.3): replaces every
  // norm state in `state` (each block's and the final norm's) by the statistics of a fresh, cache-less
  // forward over `recent_ids` [B, W] — the last norm_window_chunks chunks — keeping the CEMA states
  // and KV caches. Without it (timestep_norm_mode "exact") a cached run equals one full forward.
  void reestimate_norm_states(const Tensor& recent_ids, ModelState& state) const;
  // The training loss of ids [B, L] against targets [B, L] (ignore_index -100): token_loss(forward(ids),
  // targets), the same value and gradients up to rounding, computed without the [B, L, vocab] logits: a whole
  // head (untied or tied) and the loss are one linear_cross_entropy (ops/ops.h), which never holds more than a
  // chunk of the f32 logits. A head split over the tensor group goes through its logits and token_loss.
  Tensor forward_loss(const Tensor& ids, const Tensor& targets) const;
  // The same for piece r of sequences split over a chunk group (forward(ids, relay)); targets [B, L] are the
  // targets of this rank's L tokens.
  Tensor forward_loss(const Tensor& ids, const Tensor& targets, ChunkRelay& relay) const;
  // Mean cross-entropy of the logits against targets [B, L] (ignore_index -100).
  static Tensor loss(const Tensor& logits, const Tensor& targets);
  // The same loss of this model's forward output: loss() of whole logits, or the vocabulary-parallel
  // cross-entropy of this rank's slice (dist/vocab_parallel_cross_entropy.h) when the head is split.
  Tensor token_loss(const Tensor& logits, const Tensor& targets) const;

  // The model's parts, in order, for callers that run it layer by layer (apps/lib/parallel_scoring.h
  // pipelines a long text over ranks that way): the scaled embedding in the compute dtype, the
  // blocks, the final TimestepNorm, and the LM head (f32 logits).
  Tensor embed_tokens(const Tensor& ids) const;
  int64_t num_blocks() const { return config_.num_layers; }
  const MegalodonBlock& block(int64_t i) const { return (*layers_)[static_cast<size_t>(i)]; }
  const TimestepNorm& final_norm() const { return *output_->final_norm; }
  const Embedding& embedding() const { return *embed_; }
  const Linear* head() const { return output_->output.get(); }  // null when tied to the embedding
  Tensor project(const Tensor& x) const;

  const MegalodonConfig& config() const { return config_; }
  const TensorParallel& tensor_parallel() const { return tp_; }
  // Whether forward returns a vocabulary slice (an untied head split over the tensor group).
  bool vocabulary_split() const { return tp_.split() && output_->output != nullptr; }
  // The activations' dtype (f32 by default, bf16 for mixed precision); parameters stay as they are
  // (f32 masters) and are cast at use, CEMA's and the norms' statistics stay f32.
  void set_compute_dtype(DType dtype);
  DType compute_dtype() const { return compute_dtype_; }

 private:
  void check_ids(const Tensor& ids) const;
  // Everything before the head: the final norm's output [B, L, D] of forward(ids, ...).
  Tensor body(const Tensor& ids, const ModelState* incoming, ModelState* outgoing) const;
  Tensor body(const Tensor& ids, ChunkRelay& relay) const;
  // forward_loss's head and loss, from the body's output x.
  Tensor head_loss(const Tensor& x, const Tensor& targets) const;
  // Block i of forward(ids, relay) under activation recomputation.
  Tensor recomputed_block(int64_t i, const Tensor& x, ChunkRelay& relay) const;

  MegalodonConfig config_;
  TensorParallel tp_;
  DType compute_dtype_ = DType::f32;
  std::shared_ptr<Embedding> embed_;
  std::shared_ptr<ModuleList<MegalodonBlock>> layers_;
  std::shared_ptr<OutputLayer> output_;
};

// The whole (unsplit) model with `model`'s parameters, compute dtype and mode, on its device: `model`
// itself when it is not split; otherwise gathered over its tensor group (collective; every rank gets it).
std::shared_ptr<Megalodon> gather_whole_model(const std::shared_ptr<Megalodon>& model);

}  // namespace mgl::nn

#pragma once
// The normalized attention unit of a MEGALODON block (docs/megalodon.md §2.5, the official "mega" sub-layer):
//   T = TimestepNorm(X);  U = CEMA(T);  M = RMSNorm(U)
//   Q, K = per-head RMS-normalised (M Wzᵀ + bz), scaled by (gamma + 1)/sqrt(dz), shifted by beta, RoPE
//   Vv = silu(T Wvᵀ + bv);  R = silu(M Wrᵀ + br)
//   O = chunk-wise causal softmax(Q Kᵀ) Vv   (scale 1, inside chunks of c tokens)
//   returns Ŷ = M Wh1ᵀ + bh1 + (O ⊙ R) Wh2ᵀ + X
// Under tensor parallelism (nn/tensor_parallel.h) X, T, U and Ŷ hold this rank's D/TP channels; U is
// gathered for the replicated RMSNorm, wz, wr, wh1 and wv are split by columns (this rank's heads of
// Q, K, Vv and R, its channels of M Wh1ᵀ), wh2 by rows, its partial sums reduce-scattered back to D/TP.
#include "nn/cema.h"
#include "nn/linear.h"
#include "nn/megalodon_config.h"
#include "nn/megalodon_state.h"
#include "nn/tensor_parallel.h"
#include "nn/timestep_norm.h"

namespace mgl::nn {

class MovingAverageGatedAttention : public Module {
 public:
  MovingAverageGatedAttention(const MegalodonConfig& config, const InitOptions& options = {},
                              const TensorParallel& tp = {});
  // x [B, L, D] (D/TP channels under tensor parallelism). With `incoming` the call continues a sequence (norm statistics, CEMA state, the
  // keys and values of the partial chunk); with `outgoing` it returns the state after its last token.
  // `handoff` (with `outgoing`) sees the norm and CEMA state as soon as they are formed.
  Tensor forward(const Tensor& x, const LayerState* incoming = nullptr, LayerState* outgoing = nullptr,
                 const StateHandoff* handoff = nullptr) const;

  // The parts, for a decoder that runs the same math its own way (nn/cuda_decoder.h).
  const TimestepNorm& timenorm() const { return *timenorm_; }
  const Cema& cema() const { return *cema_; }
  const Tensor& rmsnorm_weight() const { return rmsnorm_weight_; }  // undefined unless norm_affine
  const Linear& wz() const { return *wz_; }
  const Linear& wv() const { return *wv_; }
  const Linear& wr() const { return *wr_; }
  const Linear& wh1() const { return *wh1_; }
  const Linear& wh2() const { return *wh2_; }
  const Tensor& gamma() const { return gamma_; }
  const Tensor& beta() const { return beta_; }

 private:
  // Chunk-wise causal attention over this call's tokens, continuing the partial chunk of `incoming`
  // and leaving the new partial chunk in `outgoing`. Q and K get RoPE here, per chunk.
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const LayerState* incoming,
                   LayerState* outgoing) const;

  MegalodonConfig config_;
  TensorParallel tp_;
  std::shared_ptr<TimestepNorm> timenorm_;
  std::shared_ptr<Cema> cema_;
  Tensor rmsnorm_weight_;  // undefined unless config.norm_affine
  std::shared_ptr<Linear> wz_, wv_, wr_, wh1_, wh2_;
  Tensor gamma_, beta_;  // [2, Z]: scale − 1 and offset of the queries (row 0) and keys (row 1), split by head
};

}  // namespace mgl::nn

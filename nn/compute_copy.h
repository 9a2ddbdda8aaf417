#pragma once
// Compute copies: a parameter cast once to the compute dtype, kept with the parameter, and served at every
// use until the parameter changes (the flat bf16 copy of the weights that the official implementation's
// optimizer refreshes, here one per parameter).
//
// Mixed-precision training keeps f32 master parameters and computes in bf16 (docs/megalodon.md §2.10).
// Casting a parameter at each use costs two kernels per use and step: the cast, and in backward the cast
// of its bf16 gradient back to f32 before it is added to .grad (243 + 243 in the 125M step: docs/perf.md,
// optimisation log). Modules ask for a parameter through compute_copy(parameter, dtype) instead, which
//  * returns the parameter itself when it has that dtype already (f32 compute, the f64 of gradient
//    checks): no copy, no cache;
//  * otherwise returns a view of the parameter's ComputeCopy (held by its TensorImpl), cast again first
//    unless it is current: cast from the parameter's present storage at that storage's present version.
//    Every in-place write bumps the version (core/tensor.h, Storage), and a parameter that gets new
//    storage (Module::to, replace_values, GradBuckets) has another storage, so a stale copy is never
//    served; a current one is the same rounding of the same f32 values as a cast at use: the results are
//    bitwise those of casting at every use (tests/nn/test_compute_copy.cpp holds training steps to it).
//
// Autograd: the view is the output of a node whose backward hands the bf16 gradient on unchanged to the
// parameter's AccumulateGrad, which adds it into the f32 .grad converting as it reads (one pass, where a
// cast's backward was a cast and then the add). The engine sums several gradients of one leaf in the
// leaf's dtype (autograd/engine.cpp), as it summed the f32 gradients of casts at use, and each call
// records its own node as each cast did, so every sum is formed in the same order, to the same bits. (A
// dW GEMM writing f32 would avoid the conversion too, but it skips dW's rounding to bf16: other results.)
//
// Who writes a copy:
//  * compute_copy, when it is stale: into a new tensor (a graph may still hold the old one for backward);
//  * the optimizers, in place, as they update: AdamW writes every bf16 copy in its multi-tensor pass from
//    the new f32 value it holds in registers (compute_copy_to_refresh, finish_update), so the next
//    forward casts nothing; ZeroAdamW updates only this rank's piece and all-gathers the rest in f32,
//    then recasts every copy in one multi-tensor launch (refresh_compute_copies). Like the f32 parameters
//    themselves, a copy changes under a graph kept across an optimizer step (retain_graph).
//
// Memory: a copy lives as long as its parameter: 2 bytes per parameter read in bf16 (the 125M model: 104.8M
// of its 130M parameters, 210 MB; its untied embedding table is never cast; all 130M would be 260 MB).
// Casts at use made the same copies in every forward and freed them after backward, so the peak, at the
// end of the forward, holds them either way; between steps they now stay.
//
// Cached: every parameter a module uses whole or sliced (Linear's weight and bias, TimestepNorm's weight
// and bias, LayerNorm's bias, the FFN's alpha, MEGA's beta, the tied head). Not cached: expressions of a
// parameter formed in f32 and then cast (RMSNorm's and LayerNorm's 1 + w, MEGA's (1 + gamma) / sqrt(dz)):
// caching those would need the expression's own staleness and backward for ~4 small vectors per layer.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace mgl::nn {

struct ComputeCopy {
  Tensor values;                  // the parameter cast to values.dtype(), contiguous
  std::weak_ptr<Storage> source;  // the parameter's storage it was cast from
  uint64_t version = 0;           // that storage's version then
};

// `parameter` (a leaf) in `dtype`, to compute with (see above).
Tensor compute_copy(const Tensor& parameter, DType dtype);

// For its scope, compute_copy casts at every use with cast() (whose backward casts the gradient back),
// as modules did before the cache: the reference the tests hold the cache to, bit for bit. It nests.
class CastEveryUseGuard {
 public:
  CastEveryUseGuard();
  ~CastEveryUseGuard();
  CastEveryUseGuard(const CastEveryUseGuard&) = delete;
  CastEveryUseGuard& operator=(const CastEveryUseGuard&) = delete;

 private:
  bool previous_;
};

// The casts compute_copy has made since the program started: one per stale copy, and one per use under
// CastEveryUseGuard. After the first step of a training run there are none (the tests count them).
int64_t compute_copy_casts();

// For an optimizer about to write every element of `parameter` (f32, contiguous) in place: the
// parameter's bf16 copy, to be written from the new values in the same pass, or null when it has none.
bf16* compute_copy_to_refresh(const Tensor& parameter);
// After that update of `parameters` is issued: their versions move on (they were written), and the copies
// compute_copy_to_refresh handed out for them (written too) are current, those that were current before it
// (a gated step may write nothing: a copy stale before it stays stale).
void finish_update(const std::vector<Tensor>& parameters);

// For an optimizer whose update reached the f32 parameters some other way (ZeroAdamW's all-gather, after
// which it bumps their versions): recasts every stale bf16 copy of `parameters` (f32, contiguous, on one
// device) in place, in one multi-tensor launch (a loop on the CPU), and makes it current.
void refresh_compute_copies(const std::vector<Tensor>& parameters);

}  // namespace mgl::nn

#pragma once
// TimestepNorm (docs/megalodon.md §2.2): a causal group norm whose statistics are the running mean and
// variance of everything the sequence has shown so far, carried from call to call as a state.
//
// x is [B, L, D] with D split into G groups of dg = D / G contiguous channels. For each sequence b
// and group g the state (n, mu, v) holds the count of time steps absorbed and the mean and
// population variance of all (n * dg) values seen. Step t folds its dg values into the state, then
//   y[t, k] = (x[t, k] - mu_t) / sqrt(v_t + eps) * (weight[k] + 1) + bias[k]
// so position t is normalised by statistics of steps <= t only. Splitting a sequence into pieces
// and passing the state along gives exactly the result of one call on the whole sequence (chunk
// parallelism, inference with a cache).
#include <cstdint>

#include "core/tensor.h"

namespace mgl {

struct TimestepNormState {
  Tensor count;  // [B] i64: time steps absorbed so far (padded steps do not count)
  Tensor mean;   // [B, G] running mean: f32 (f64 when x is f64)
  Tensor var;    // [B, G] running population variance, same dtype as mean
};

struct TimestepNormOutput {
  Tensor y;  // [B, L, D], the dtype of x
  TimestepNormState state;
};

// The dtype of the carried mean and variance for inputs of `x_dtype`: f32, or f64 for f64 inputs.
// Long sequences need it: a bf16 running mean over millions of steps would lose the newest steps.
DType timestep_norm_state_dtype(DType x_dtype);

// The prior every sequence starts from: count 0, mean 0, variance 1. With count 0 the prior's mean
// and variance do not influence any output (the first step replaces them).
TimestepNormState timestep_norm_initial_state(int64_t batch, int64_t groups, DType x_dtype,
                                              Device device = Device::cpu());

// One differentiable node with outputs (y, state.mean, state.var): gradients flow to x, weight,
// bias and the incoming mean and variance, including those that reach the outgoing state (a later
// chunk consumed it). The count carries no gradient.
//   weight, bias: [D], the dtype and device of x; the scale applied is weight + 1.
//   incoming: nullptr starts from timestep_norm_initial_state().
//   padding_mask: optional [B, L] of any dtype; a non-zero entry marks a padded step, whose
//     outputs are exact zeros and which leaves the state untouched.
TimestepNormOutput timestep_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                                 const TimestepNormState* incoming, double eps = 1e-5,
                                 const Tensor& padding_mask = {});

}  // namespace mgl

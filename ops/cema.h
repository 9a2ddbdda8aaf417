#pragma once
// CEMA, MEGALODON's complex exponential moving average (docs/megalodon.md §2.3), as one differentiable op,
// plus its one-token recurrent form for decoding. The math is in ops/cema.cpp and base/cema_math.h.
//
// Shapes (D channels, N modes per channel; the parameter shapes of the official state_dict):
//   x [B, L, D] (token-major; f32, bf16 or f64), y like x
//   alpha, delta [D, N, 1], theta [D, 1, 1], gamma [D, N, 2] (re, im), omega [D, 1]
//   h_in, h_out [B, D, N, 2]: the complex state as (re, im) pairs
// Parameters and states are f32 (f64 when x is f64): CEMA coefficients and states stay in full
// precision even for bf16 activations (docs/megalodon.md §2.10).
#include "core/tensor.h"

namespace mgl {

struct CemaOutput {
  Tensor y;      // [B, L, D], dtype of x
  Tensor h_out;  // [B, D, N, 2], the state after the last token; undefined unless requested
};

// y_t = Re(Σ_n γ_n h_{t,n}) + omega·x_t with h_t = q·h_{t-1} + p·x_t, h_{-1} = h_in (zero when
// h_in is undefined). One autograd node: gradients reach x, every raw parameter and h_in, from
// both y and h_out.
CemaOutput cema(const Tensor& x, const Tensor& alpha, const Tensor& delta, const Tensor& theta, const Tensor& gamma,
                const Tensor& omega, const Tensor& h_in, bool return_state);

// The derived coefficients of docs/megalodon.md §2.3.2, computed from the raw parameters (no
// autograd): each call of cema() computes them afresh; decoding computes them once and reuses them every
// token.
struct CemaCoefficients {
  Tensor p;      // [D, N] input weight α
  Tensor q;      // [D, N, 2] decay (1 − αδ)·e^{iφ}
  Tensor log_q;  // [D, N, 2] log(1 − αδ) + iφ
  Tensor gamma;  // [D, N, 2] output weight, already divided by √N
  Tensor omega;  // [D] skip weight
};
CemaCoefficients cema_coefficients(const Tensor& alpha, const Tensor& delta, const Tensor& theta, const Tensor& gamma,
                                   const Tensor& omega);

// One decoding step (forward only, no autograd): x_t [B, D]; h [B, D, N, 2] (contiguous, dtype of
// the coefficients) is updated in place to q·h + p·x_t. Returns y_t [B, D] (dtype of x_t).
Tensor cema_step(const Tensor& x_t, const CemaCoefficients& coefficients, const Tensor& h);

}  // namespace mgl

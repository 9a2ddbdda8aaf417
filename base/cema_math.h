#pragma once
// CEMA, the complex exponential moving average of MEGALODON (docs/megalodon.md §2.3): the per-mode coefficient
// math, written once for the CPU reference (ops/cema.cpp) and the kernels (cuda/cema.cu). Plain C++ marked
// MGL_HOST_DEVICE, so a CPU loop in f64 and a GPU thread in f32 run the same lines.
//
// Per channel d and mode n (0-based; docs/megalodon.md §2.3.2 numbers it n + 1), from the raw parameters:
//   α = σ(alpha), δ = σ(delta), s = σ(theta), φ = (n + 1)·s·2π/N, r = 1 − α·δ
//   p = α (real input weight),  q = r·e^{iφ} (decay, |q| < 1),  log q = log r + iφ,
//   γ = (gamma_re + i·gamma_im)/√N (output weight)
// and the recurrence they define (x real, h complex, h_{-1} = the incoming state):
//   h_t = q·h_{t-1} + p·x_t,   y_t = Re(Σ_n γ_n·h_{t,n}) + omega_d·x_t.
#include <math.h>

#include <cstdint>

#include "base/complex.h"

namespace mgl {

template <class T>
MGL_HOST_DEVICE inline T cema_sigmoid(T v) {
  return T(1) / (T(1) + ::exp(-v));
}

// The coefficients of one mode.
template <class T>
struct CemaMode {
  T p;
  Complex<T> q;
  Complex<T> log_q;
  Complex<T> gamma;
};

// Coefficients of mode n of N from the raw parameters of its channel. log q is formed from the
// rounded r, so that q^j = exp(j·log q) agrees with j repeated multiplications by q.
template <class T>
MGL_HOST_DEVICE inline CemaMode<T> cema_mode(T alpha, T delta, T theta, Complex<T> gamma, int64_t n, int64_t N) {
  constexpr T kTwoPi = T(6.283185307179586476925);
  const T a = cema_sigmoid(alpha), b = cema_sigmoid(delta), s = cema_sigmoid(theta);
  const T phase = T(n + 1) * s * kTwoPi / T(N);
  const T r = T(1) - a * b;
  CemaMode<T> mode;
  mode.p = a;
  mode.q = Complex<T>(r * ::cos(phase), r * ::sin(phase));
  mode.log_q = Complex<T>(::log(r), phase);
  mode.gamma = gamma * (T(1) / ::sqrt(T(N)));
  return mode;
}

// The gradient of the loss with respect to one mode's coefficients, summed over batch and time:
// ∂ℓ/∂p (real) and the complex gradients G_q, G_γ (docs/megalodon.md §0.3: G_z = ∂ℓ/∂Re z + i·∂ℓ/∂Im z).
template <class T>
struct CemaModeGrad {
  Complex<T> q;
  Complex<T> gamma;
  T p = T(0);
};

// That gradient carried to the raw parameters of the mode (docs/megalodon.md §2.3.5 f). `theta` is this
// mode's share of d theta (the caller sums it over the channel's modes).
template <class T>
struct CemaRawGrad {
  T alpha, delta, theta;
  Complex<T> gamma;
};

// With q = r·e^{iφ}: ∂ℓ/∂r = Re(G_q e^{-iφ}), ∂ℓ/∂φ = r·Im(G_q e^{-iφ}); r = 1 − αδ, p = α, and
// the sigmoids contribute σ' = σ(1 − σ).
template <class T>
MGL_HOST_DEVICE inline CemaRawGrad<T> cema_mode_raw_grad(T alpha, T delta, T theta, int64_t n, int64_t N,
                                                         const CemaModeGrad<T>& g) {
  constexpr T kTwoPi = T(6.283185307179586476925);
  const T a = cema_sigmoid(alpha), b = cema_sigmoid(delta), s = cema_sigmoid(theta);
  const T phase_per_s = T(n + 1) * kTwoPi / T(N);
  const T phase = phase_per_s * s;
  const T r = T(1) - a * b;
  const Complex<T> rotated = g.q * Complex<T>(::cos(phase), -::sin(phase));
  const T d_r = rotated.re, d_phase = r * rotated.im;
  CemaRawGrad<T> out;
  out.alpha = (g.p - b * d_r) * a * (T(1) - a);
  out.delta = -a * d_r * b * (T(1) - b);
  out.theta = d_phase * phase_per_s * s * (T(1) - s);
  out.gamma = g.gamma * (T(1) / ::sqrt(T(N)));
  return out;
}

}  // namespace mgl

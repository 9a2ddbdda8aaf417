#pragma once
// CEMA, the complex exponential moving average of MEGALODON (docs/megalodon.md §2.3): the per-mode coefficient
// math, written once for the CPU reference (ops/cema.cpp) and the kernels (cuda/cema.cu), and the
// kernels' interface (raw pointers, sizes, stream).
//
// Per channel d and mode n (0-based; docs/megalodon.md §2.3.2 numbers it n + 1), from the raw parameters:
//   α = σ(alpha), δ = σ(delta), s = σ(theta), φ = (n + 1)·s·2π/N, r = 1 − α·δ
//   p = α (real input weight),  q = r·e^{iφ} (decay, |q| < 1),  log q = log r + iφ,
//   γ = (gamma_re + i·gamma_im)/√N (output weight)
// and the recurrence they define (x real, h complex, h_{-1} = the incoming state):
//   h_t = q·h_{t-1} + p·x_t,   y_t = Re(Σ_n γ_n·h_{t,n}) + omega_d·x_t.
#include <math.h>

#include <cstdint>

#include "base/layout.h"
#include "cuda/complex.h"

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

namespace cuda {

// Sizes of one call: x is [batch, length, channels] (token-major), `modes` = N.
struct CemaSizes {
  int64_t batch = 0, length = 0, channels = 0, modes = 0;
};

// The largest N the kernels hold in registers (MEGALODON uses N = 16).
constexpr int64_t kCemaMaxModes = 16;

// Per-call coefficient tensors in f32, [D, N] (mode n of channel d at d·N + n), plus omega [D].
struct CemaCoefficientPointers {
  const float* p = nullptr;
  const Complex<float>* q = nullptr;
  const Complex<float>* log_q = nullptr;
  const Complex<float>* gamma = nullptr;
  const float* omega = nullptr;
};

// alpha, delta [D, N], theta [D], gamma_raw [D, N] complex -> p, q, log_q, gamma [D, N].
struct CemaCoefficientsArgs {
  int64_t channels = 0, modes = 0;
  const float* alpha = nullptr;
  const float* delta = nullptr;
  const float* theta = nullptr;
  const Complex<float>* gamma_raw = nullptr;
  float* p = nullptr;
  Complex<float>* q = nullptr;
  Complex<float>* log_q = nullptr;
  Complex<float>* gamma = nullptr;
};
void cema_coefficients(const CemaCoefficientsArgs& args, Stream stream);

// Scratch memory a call needs (the caller allocates it; the kernels never allocate).
int64_t cema_forward_workspace_bytes(const CemaSizes& sizes);
int64_t cema_backward_workspace_bytes(const CemaSizes& sizes);

// y (same dtype as x: f32 or bf16) and, if h_out is not null, the final state [B, D, N] complex.
struct CemaForwardArgs {
  CemaSizes sizes;
  DType dtype = DType::f32;  // of x and y
  const void* x = nullptr;
  CemaCoefficientPointers coefficients;
  const Complex<float>* h_in = nullptr;  // [B, D, N], or null (zero state)
  void* y = nullptr;
  Complex<float>* h_out = nullptr;  // [B, D, N], or null
  void* workspace = nullptr;        // cema_forward_workspace_bytes(sizes)
};
void cema_forward(const CemaForwardArgs& args, Stream stream);

// The gradients of one call given dy (dtype of x) and g_out (the complex gradient of h_out, or
// null): dx, the raw-parameter gradients (d_alpha, d_delta [D, N], d_theta, d_omega [D], d_gamma
// [D, N] complex), and d_h_in [B, D, N] complex (written only when h_in and d_h_in are not null).
struct CemaParameterGradPointers {
  float* alpha = nullptr;
  float* delta = nullptr;
  float* theta = nullptr;
  Complex<float>* gamma = nullptr;
  float* omega = nullptr;
};
struct CemaBackwardArgs {
  CemaSizes sizes;
  DType dtype = DType::f32;  // of x, dy and dx
  const void* x = nullptr;
  const void* dy = nullptr;
  const Complex<float>* g_out = nullptr;
  const float* alpha = nullptr;  // the raw parameters, for the chain rule through the sigmoids
  const float* delta = nullptr;
  const float* theta = nullptr;
  CemaCoefficientPointers coefficients;
  const Complex<float>* h_in = nullptr;
  void* dx = nullptr;
  CemaParameterGradPointers grads;
  Complex<float>* d_h_in = nullptr;
  void* workspace = nullptr;  // cema_backward_workspace_bytes(sizes)
};
void cema_backward(const CemaBackwardArgs& args, Stream stream);

// One decoding step for every (b, d): h <- q h + p x_t (h [B, D, N] complex, in place),
// y_t = Re(Σ_n γ_n h_n) + omega x_t. x_t and y_t are [B, D] of `dtype` (f32 or bf16).
struct CemaStepArgs {
  int64_t batch = 0, channels = 0, modes = 0;
  DType dtype = DType::f32;
  const void* x = nullptr;
  CemaCoefficientPointers coefficients;
  Complex<float>* h = nullptr;
  void* y = nullptr;
};
void cema_step(const CemaStepArgs& args, Stream stream);

}  // namespace cuda
}  // namespace mgl

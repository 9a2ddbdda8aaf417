#pragma once
// The CEMA kernels' interface (raw pointers, sizes, stream): the per-call coefficients, the forward and
// backward over a sequence, and the one-token decoding step of the recurrence
//   h_t = q·h_{t-1} + p·x_t,   y_t = Re(Σ_n γ_n·h_{t,n}) + omega_d·x_t
// whose coefficients p, q, γ base/cema_math.h forms from the raw parameters (docs/megalodon.md §2.3).
#include <cstdint>

#include "base/cema_math.h"
#include "base/layout.h"

namespace mgl::cuda {

// Sizes of one call: x is [batch, length, channels] (token-major), `modes` = N.
struct CemaSizes {
  int64_t batch = 0, length = 0, channels = 0, modes = 0;
};

// The largest N the kernels hold in registers (MEGALODON uses N = 16).
constexpr int64_t kCemaMaxModes = 16;

// ---- The matrix form inside a chunk ---------------------------------------------------------------------
// Host/device formulas shared by the kernels (cuda/cema.cu) and the CPU test that checks them against the
// recurrence (tests/ops/test_cema_matrix.cpp). Time is cut into chunks of kCemaChunk steps. Per mode, with the
// powers Z[j] = q^j (j = 0..kCemaChunk) of one table per call, a chunk of T <= kCemaChunk steps entered with the
// state h (h_k = q·h_{k-1} + p·x_k from h_{-1} = h) ends in
//   h_{T-1} = Z[T]·h + p·A,   A = Σ_{i<T} Z[T-1-i]·x_i                      (2 FMAs per mode and step),
// and, per channel, with g_n = γ_n·h_n, its outputs are
//   y_k = Re Σ_n Z_n[k+1]·g_n + Σ_{i<=k} K[k-i]·x_i,   K[j] = omega·[j = 0] + Re Σ_n γ_n·p_n·Z_n[j]:
// the entering state's term (2 FMAs per mode and output) and a causal convolution with a real kernel of
// kCemaChunk taps (docs/megalodon.md §2.3.3's K, with the skip weight omega folded into K[0]).
constexpr int64_t kCemaChunk = 32;

// Z[j] = q^j from exp(j·log q), never from repeated products (docs/megalodon.md §2.3.6); Z[0] = 1 also where
// 1 − αδ rounds to 0 (log q = −inf, and −inf·0 would be NaN).
template <class T>
MGL_HOST_DEVICE inline Complex<T> cema_power(Complex<T> log_q, int64_t j) {
  return j == 0 ? Complex<T>(T(1)) : exp(log_q * T(j));
}

// K[j] of a channel from its N modes' p, γ and powers Z_n[j] (power_j[n]).
template <class T>
MGL_HOST_DEVICE inline T cema_tap(int64_t j, T omega, const T* p, const Complex<T>* gamma, const Complex<T>* power_j,
                                  int64_t N) {
  T tap = j == 0 ? omega : T(0);
  for (int64_t n = 0; n < N; ++n) tap += p[n] * (gamma[n] * power_j[n]).re;
  return tap;
}

// A of one mode for a chunk whose T inputs end its window of kCemaChunk values (window[k] = x_{k-(kCemaChunk-T)},
// zeros before them): Σ_k Z[kCemaChunk-1-k]·window[k]. z holds Z[0..kCemaChunk-1].
template <class T, class U>
MGL_HOST_DEVICE inline Complex<T> cema_chunk_sum(const Complex<T>* z, const U* window) {
  Complex<T> a;
  for (int64_t k = 0; k < kCemaChunk; ++k) a += z[kCemaChunk - 1 - k] * T(window[k]);
  return a;
}

// Output k of a chunk from its inputs x_0..x_k, the taps K and the entering state's term: power_next[n] =
// Z_n[k+1] and g[n] = γ_n·h_n for the channel's N modes.
template <class T, class U>
MGL_HOST_DEVICE inline T cema_chunk_output(int64_t k, const T* taps, const U* x, const Complex<T>* power_next,
                                           const Complex<T>* g, int64_t N) {
  T y = T(0);
  for (int64_t i = 0; i <= k; ++i) y += taps[i] * T(x[k - i]);
  for (int64_t n = 0; n < N; ++n) {  // Re(Z·g) as two multiply-adds
    y += power_next[n].re * g[n].re;
    y -= power_next[n].im * g[n].im;
  }
  return y;
}

// ---- One step of each walk, for one mode -----------------------------------------------------------------
// Shared by the gradient pass (cuda/cema.cu) and the CPU reference's backward (ops/cema.cpp).

// The recurrence: h_t = q·h_{t-1} + p·x_t.
template <class T>
MGL_HOST_DEVICE inline Complex<T> cema_state_step(Complex<T> q, T p, Complex<T> h_prev, T x) {
  return q * h_prev + p * x;
}

// The adjoint walk in descending time. With c what reaches h_t from later (conj(q)·a_{t+1}, or G_{h_out} at
// the last step), a_t = G_{h_t} = conj(γ)·dy_t + c. Adds step t's terms to G (G_q += a_t·conj(h_{t-1}),
// G_γ += dy_t·conj(h_t), ∂ℓ/∂p += x_t·Re a_t), leaves conj(q)·a_t in c (what reaches h_{t-1}) and returns
// Re a_t (dx_t = omega·dy_t + Σ_n p·Re a_t).
template <class T>
MGL_HOST_DEVICE inline T cema_adjoint_step(Complex<T> q, Complex<T> gamma, T dy, T x, Complex<T> h_prev, Complex<T> h,
                                           Complex<T>& c, CemaModeGrad<T>& G) {
  const Complex<T> a = conj(gamma) * dy + c;
  G.q += a * conj(h_prev);
  G.gamma += dy * conj(h);
  G.p += x * a.re;
  c = conj(q) * a;
  return a.re;
}

// Chunks per group in the forward: its local pass writes one state per group and its output pass walks a group's
// chunks in order (one thread per (b, channel, group)), so longer groups move fewer states but leave fewer
// walks. The longest group of at most kCemaMaxGroupChunks that still leaves kCemaMinWalks walks, else 1.
constexpr int64_t kCemaMaxGroupChunks = 8, kCemaMinWalks = 65536;
inline int64_t cema_group_chunks(const CemaSizes& s) {
  const int64_t chunks = (s.length + kCemaChunk - 1) / kCemaChunk;
  for (int64_t G = kCemaMaxGroupChunks; G > 1; G /= 2) {
    if (s.batch * s.channels * ((chunks + G - 1) / G) >= kCemaMinWalks) return G;
  }
  return 1;
}

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

}  // namespace mgl::cuda

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

// cema: MEGALODON's complex exponential moving average (docs/megalodon.md §2.3) as one fused op.
//
// Forward, per batch b, channel d and mode n, with the coefficients p, q, γ of base/cema_math.h:
//   h_t = q·h_{t-1} + p·x_t   (h_{-1} = h_in, or 0),
//   y_t = Re(Σ_n γ_n·h_{t,n}) + omega·x_t,   h_out = h_{L-1}.
// Backward (docs/megalodon.md §0.3: G_z = ∂ℓ/∂Re z + i·∂ℓ/∂Im z for a complex z). The adjoint
// a_t = G_{h_t} runs backwards in time:
//   a_t = conj(γ)·dy_t + conj(q)·a_{t+1},   a_{L-1} = conj(γ)·dy_{L-1} + G_{h_out},
// and gives dx_t = omega·dy_t + Σ_n p·Re a_t,  G_{h_in} = conj(q)·a_0, and (summed over b and t)
//   G_q = Σ a_t·conj(h_{t-1}),  G_γ = Σ dy_t·conj(h_t),  ∂ℓ/∂p = Σ x_t·Re a_t,  d omega = Σ dy_t·x_t,
// which cema_mode_raw_grad (base/cema_math.h) carries to the raw alpha, delta, theta, gamma. This is
// the gradient of docs/megalodon.md §2.3.5 (whose convolution form sums the same terms in another
// order).
//
// The CPU code below is the reference: the recurrence and its adjoint, literally, in f64 (the
// coefficients first rounded to the parameter dtype, as every implementation computes them). The
// CUDA kernels (cuda/cema.cu) compute the same recurrence as a chunked scan, each chunk in the matrix form
// of cuda/cema.h (checked against this recurrence in tests/ops/test_cema_matrix.cpp).
#include "ops/cema.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "base/cema_math.h"
#include "core/cuda_context.h"
#include "cuda/cema.h"
#include "ops/ops.h"

namespace mgl {

namespace {

using C64 = Complex<double>;

struct Dims {
  int64_t B = 0, L = 0, D = 0, N = 0;
};

// ---- input checks ------------------------------------------------------------------------------------

// The raw parameters: defined, one device, f32 or f64, shapes alpha/delta [D, N, 1], theta
// [D, 1, 1], gamma [D, N, 2], omega [D, 1]. Returns D and N (from alpha).
Dims check_parameters(const char* op, const Tensor& alpha, const Tensor& delta, const Tensor& theta,
                      const Tensor& gamma, const Tensor& omega) {
  const std::pair<const char*, const Tensor*> named[] = {
      {"alpha", &alpha}, {"delta", &delta}, {"theta", &theta}, {"gamma", &gamma}, {"omega", &omega}};
  for (const auto& [name, t] : named) MGL_CHECK(t->defined(), op, ": ", name, " is an undefined tensor");
  MGL_CHECK(alpha.dtype() == DType::f32 || alpha.dtype() == DType::f64, op,
            ": parameters must be f32 or f64 (CEMA keeps them in full precision), got alpha ", alpha.describe());
  for (const auto& [name, t] : named) {
    MGL_CHECK(t->dtype() == alpha.dtype(), op, ": ", name, " ", t->describe(), " and alpha ", alpha.describe(),
              " differ in dtype");
    MGL_CHECK(t->device() == alpha.device(), op, ": ", name, " ", t->describe(), " and alpha ", alpha.describe(),
              " are on different devices");
  }
  MGL_CHECK(alpha.dim() == 3 && alpha.size(2) == 1 && alpha.size(1) >= 1, op, ": alpha must be [D, N, 1] with N >= 1, got ",
            alpha.describe());
  const int64_t D = alpha.size(0), N = alpha.size(1);
  auto check_shape = [&](const char* name, const Tensor& t, const Shape& expected, const char* pattern) {
    MGL_CHECK(t.shape() == expected, op, ": ", name, " must be ", pattern, " = ", shape_str(expected),
              " (D = ", D, " channels, N = ", N, " modes, from alpha), got ", t.describe());
  };
  check_shape("delta", delta, {D, N, 1}, "[D, N, 1]");
  check_shape("theta", theta, {D, 1, 1}, "[D, 1, 1]");
  check_shape("gamma", gamma, {D, N, 2}, "[D, N, 2]");
  check_shape("omega", omega, {D, 1}, "[D, 1]");
  return {0, 0, D, N};
}

// The activations and the incoming state against the parameters; the limits of the CUDA kernels.
Dims check_inputs(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& delta, const Tensor& theta,
                  const Tensor& gamma, const Tensor& omega, const Tensor& h_in) {
  Dims dims = check_parameters(op, alpha, delta, theta, gamma, omega);
  MGL_CHECK(x.defined(), op, ": x is an undefined tensor");
  MGL_CHECK(x.dim() == 3 && x.size(2) == dims.D, op, ": x must be [B, L, D] with D = ", dims.D,
            " (from alpha ", alpha.describe(), "), got ", x.describe());
  MGL_CHECK(x.device() == alpha.device(), op, ": x ", x.describe(), " and the parameters (alpha ", alpha.describe(),
            ") are on different devices");
  if (alpha.dtype() == DType::f64)
    MGL_CHECK(x.dtype() == DType::f64, op, ": f64 parameters need an f64 x, got ", x.describe());
  else
    MGL_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::bf16, op,
              ": f32 parameters need an f32 or bf16 x, got ", x.describe());
  dims.B = x.size(0);
  dims.L = x.size(1);
  if (h_in.defined()) {
    const Shape expected{dims.B, dims.D, dims.N, 2};
    MGL_CHECK(h_in.shape() == expected, op, ": h_in must be [B, D, N, 2] = ", shape_str(expected), ", got ",
              h_in.describe());
    MGL_CHECK(h_in.dtype() == alpha.dtype() && h_in.device() == alpha.device(), op, ": h_in ", h_in.describe(),
              " must have the dtype and device of the parameters (alpha ", alpha.describe(), ")");
  }
  if (x.is_cuda())
    MGL_CHECK(dims.N <= cuda::kCemaMaxModes, op, ": the CUDA kernels support N <= ", cuda::kCemaMaxModes,
              " modes per channel, got N = ", dims.N);
  return dims;
}

// ---- helpers -------------------------------------------------------------------------------------------

// Contiguous, and aligned so that its pairs can be read as Complex values (copies if needed).
Tensor complex_ready(const Tensor& t) {
  Tensor c = contiguous(t.detach());
  if (reinterpret_cast<uintptr_t>(c.raw_data()) % (2 * c.element_size()) == 0) return c;
  Tensor copy = Tensor::empty(c.shape(), c.dtype(), c.device());
  copy_(copy, c);
  return copy;
}

// A [..., 2] tensor read as complex numbers, and back.
std::vector<C64> complex_values(const Tensor& t) {
  const std::vector<double> v = t.to_vector<double>();
  std::vector<C64> out(v.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = C64(v[2 * i], v[2 * i + 1]);
  return out;
}
Tensor complex_tensor(const std::vector<C64>& values, const Shape& shape, DType dtype) {
  std::vector<double> flat(2 * values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    flat[2 * i] = values[i].re;
    flat[2 * i + 1] = values[i].im;
  }
  return Tensor::from_vector(flat, shape, dtype);
}

template <class U>
U* pointer(const Tensor& t) {
  return t.defined() ? static_cast<U*>(t.raw_data()) : nullptr;
}

cuda::CemaCoefficientPointers coefficient_pointers(const CemaCoefficients& c) {
  return {pointer<const float>(c.p), pointer<const Complex<float>>(c.q), pointer<const Complex<float>>(c.log_q),
          pointer<const Complex<float>>(c.gamma), pointer<const float>(c.omega)};
}

// An uninitialised device buffer of at least `bytes` bytes.
Tensor workspace(int64_t bytes, const Device& device) {
  return Tensor::empty({(bytes + 3) / 4}, DType::f32, device);
}

// ---- CPU reference ---------------------------------------------------------------------------------------

// One call's sizes and coefficients in f64.
struct Reference {
  int64_t B, L, D, N;
  std::vector<double> p, omega;
  std::vector<C64> q, gamma;

  Reference(const Dims& dims, const CemaCoefficients& c)
      : B(dims.B), L(dims.L), D(dims.D), N(dims.N), p(c.p.to_vector<double>()), omega(c.omega.to_vector<double>()),
        q(complex_values(c.q)), gamma(complex_values(c.gamma)) {}

  int64_t token(int64_t b, int64_t t, int64_t d) const { return (b * L + t) * D + d; }
  int64_t mode(int64_t d, int64_t n) const { return d * N + n; }
  int64_t state(int64_t b, int64_t d, int64_t n) const { return (b * D + d) * N + n; }
};

// y and h_out from x and h_in (empty = zero state): the recurrence, one mode at a time.
void reference_forward(const Reference& r, const std::vector<double>& x, const std::vector<C64>& h_in,
                       std::vector<double>& y, std::vector<C64>& h_out) {
  y.assign(r.B * r.L * r.D, 0.0);
  h_out.assign(r.B * r.D * r.N, C64());
  for (int64_t b = 0; b < r.B; ++b) {
    for (int64_t d = 0; d < r.D; ++d) {
      for (int64_t t = 0; t < r.L; ++t) y[r.token(b, t, d)] = r.omega[d] * x[r.token(b, t, d)];
      for (int64_t n = 0; n < r.N; ++n) {
        const int64_t m = r.mode(d, n);
        C64 h = h_in.empty() ? C64() : h_in[r.state(b, d, n)];
        for (int64_t t = 0; t < r.L; ++t) {
          h = r.q[m] * h + r.p[m] * x[r.token(b, t, d)];
          y[r.token(b, t, d)] += (r.gamma[m] * h).re;
        }
        h_out[r.state(b, d, n)] = h;
      }
    }
  }
}

struct ReferenceGrads {
  std::vector<double> dx, d_omega;
  std::vector<CemaModeGrad<double>> modes;  // per (d, n), summed over b and t
  std::vector<C64> d_h_in;
};

// The adjoint sweep. g_out (the gradient of h_out) may be empty.
ReferenceGrads reference_backward(const Reference& r, const std::vector<double>& x, const std::vector<C64>& h_in,
                                  const std::vector<double>& dy, const std::vector<C64>& g_out) {
  ReferenceGrads g;
  g.dx.assign(r.B * r.L * r.D, 0.0);
  g.d_omega.assign(r.D, 0.0);
  g.modes.assign(r.D * r.N, CemaModeGrad<double>());
  g.d_h_in.assign(r.B * r.D * r.N, C64());
  std::vector<C64> h(r.L + 1);  // h[t + 1] = h_t, h[0] = h_{-1}
  for (int64_t b = 0; b < r.B; ++b) {
    for (int64_t d = 0; d < r.D; ++d) {
      for (int64_t t = 0; t < r.L; ++t) {
        const int64_t i = r.token(b, t, d);
        g.dx[i] = r.omega[d] * dy[i];
        g.d_omega[d] += dy[i] * x[i];
      }
      for (int64_t n = 0; n < r.N; ++n) {
        const int64_t m = r.mode(d, n);
        const C64 q = r.q[m], gamma = r.gamma[m];
        const double p = r.p[m];
        h[0] = h_in.empty() ? C64() : h_in[r.state(b, d, n)];
        for (int64_t t = 0; t < r.L; ++t) h[t + 1] = cuda::cema_state_step(q, p, h[t], x[r.token(b, t, d)]);
        // What reaches h_t from later: conj(q)·a_{t+1}, or G_{h_out} for the last step.
        C64 carry = g_out.empty() ? C64() : g_out[r.state(b, d, n)];
        CemaModeGrad<double>& G = g.modes[m];
        for (int64_t t = r.L - 1; t >= 0; --t) {
          const int64_t i = r.token(b, t, d);
          g.dx[i] += p * cuda::cema_adjoint_step(q, gamma, dy[i], x[i], h[t], h[t + 1], carry, G);
        }
        g.d_h_in[r.state(b, d, n)] = carry;  // conj(q)·a_0
      }
    }
  }
  return g;
}

// ---- the two backends ------------------------------------------------------------------------------------

struct Saved {  // what backward needs: the inputs (detached) and the coefficients of the call
  Dims dims;
  Tensor x, alpha, delta, theta, gamma, omega, h_in;
  CemaCoefficients coefficients;
};

struct Grads {
  Tensor dx, alpha, delta, theta, gamma, omega, h_in;
};

CemaOutput forward_cpu(const Saved& s, bool return_state) {
  const Reference r(s.dims, s.coefficients);
  std::vector<double> y;
  std::vector<C64> h_out;
  reference_forward(r, s.x.to_vector<double>(), s.h_in.defined() ? complex_values(s.h_in) : std::vector<C64>(), y,
                    h_out);
  CemaOutput out;
  out.y = Tensor::from_vector(y, s.x.shape(), s.x.dtype());
  if (return_state) out.h_out = complex_tensor(h_out, {r.B, r.D, r.N, 2}, s.alpha.dtype());
  return out;
}

Grads backward_cpu(const Saved& s, const Tensor& dy, const Tensor& g_out) {
  const Reference r(s.dims, s.coefficients);
  const ReferenceGrads g =
      reference_backward(r, s.x.to_vector<double>(), s.h_in.defined() ? complex_values(s.h_in) : std::vector<C64>(),
                         dy.to_vector<double>(), g_out.defined() ? complex_values(g_out) : std::vector<C64>());
  const std::vector<double> alpha = s.alpha.to_vector<double>(), delta = s.delta.to_vector<double>(),
                            theta = s.theta.to_vector<double>();
  std::vector<double> d_alpha(r.D * r.N), d_delta(r.D * r.N), d_theta(r.D, 0.0);
  std::vector<C64> d_gamma(r.D * r.N);
  for (int64_t d = 0; d < r.D; ++d) {
    for (int64_t n = 0; n < r.N; ++n) {
      const int64_t m = r.mode(d, n);
      const CemaRawGrad<double> raw = cema_mode_raw_grad(alpha[m], delta[m], theta[d], n, r.N, g.modes[m]);
      d_alpha[m] = raw.alpha;
      d_delta[m] = raw.delta;
      d_gamma[m] = raw.gamma;
      d_theta[d] += raw.theta;
    }
  }
  const DType pd = s.alpha.dtype();
  Grads out;
  out.dx = Tensor::from_vector(g.dx, s.x.shape(), s.x.dtype());
  out.alpha = Tensor::from_vector(d_alpha, s.alpha.shape(), pd);
  out.delta = Tensor::from_vector(d_delta, s.delta.shape(), pd);
  out.theta = Tensor::from_vector(d_theta, s.theta.shape(), pd);
  out.gamma = complex_tensor(d_gamma, s.gamma.shape(), pd);
  out.omega = Tensor::from_vector(g.d_omega, s.omega.shape(), pd);
  if (s.h_in.defined()) out.h_in = complex_tensor(g.d_h_in, s.h_in.shape(), pd);
  return out;
}

cuda::CemaSizes cuda_sizes(const Dims& dims) { return {dims.B, dims.L, dims.D, dims.N}; }

CemaOutput forward_cuda(const Saved& s, bool return_state) {
  const Device device = s.x.device();
  DeviceGuard guard(device);
  CemaOutput out;
  out.y = Tensor::empty(s.x.shape(), s.x.dtype(), device);
  if (return_state) out.h_out = Tensor::empty({s.dims.B, s.dims.D, s.dims.N, 2}, DType::f32, device);
  const cuda::CemaSizes sizes = cuda_sizes(s.dims);
  int64_t bytes = 0;
  MGL_ON_CUDA(bytes = cuda::cema_forward_workspace_bytes(sizes));
  const Tensor scratch = workspace(bytes, device);
  cuda::CemaForwardArgs args;
  args.sizes = sizes;
  args.dtype = s.x.dtype();
  args.x = s.x.raw_data();
  args.coefficients = coefficient_pointers(s.coefficients);
  args.h_in = pointer<const Complex<float>>(s.h_in);
  args.y = out.y.raw_data();
  args.h_out = pointer<Complex<float>>(out.h_out);
  args.workspace = scratch.raw_data();
  MGL_ON_CUDA(cuda::cema_forward(args, compute_stream(device)));
  return out;
}

Grads backward_cuda(const Saved& s, const Tensor& dy, const Tensor& g_out) {
  const Device device = s.x.device();
  DeviceGuard guard(device);
  Grads out;
  out.dx = Tensor::empty(s.x.shape(), s.x.dtype(), device);
  out.alpha = Tensor::empty(s.alpha.shape(), DType::f32, device);
  out.delta = Tensor::empty(s.delta.shape(), DType::f32, device);
  out.theta = Tensor::empty(s.theta.shape(), DType::f32, device);
  out.gamma = Tensor::empty(s.gamma.shape(), DType::f32, device);
  out.omega = Tensor::empty(s.omega.shape(), DType::f32, device);
  if (s.h_in.defined()) out.h_in = Tensor::empty(s.h_in.shape(), DType::f32, device);
  const cuda::CemaSizes sizes = cuda_sizes(s.dims);
  int64_t bytes = 0;
  MGL_ON_CUDA(bytes = cuda::cema_backward_workspace_bytes(sizes));
  const Tensor scratch = workspace(bytes, device);
  cuda::CemaBackwardArgs args;
  args.sizes = sizes;
  args.dtype = s.x.dtype();
  args.x = s.x.raw_data();
  args.dy = dy.raw_data();
  args.g_out = pointer<const Complex<float>>(g_out);
  args.alpha = pointer<const float>(s.alpha);
  args.delta = pointer<const float>(s.delta);
  args.theta = pointer<const float>(s.theta);
  args.coefficients = coefficient_pointers(s.coefficients);
  args.h_in = pointer<const Complex<float>>(s.h_in);
  args.dx = out.dx.raw_data();
  args.grads = {pointer<float>(out.alpha), pointer<float>(out.delta), pointer<float>(out.theta),
                pointer<Complex<float>>(out.gamma), pointer<float>(out.omega)};
  args.d_h_in = pointer<Complex<float>>(out.h_in);
  args.workspace = scratch.raw_data();
  MGL_ON_CUDA(cuda::cema_backward(args, compute_stream(device)));
  return out;
}

// ---- decoding helpers ------------------------------------------------------------------------------------

// The coefficients on the CPU, in the parameter dtype M.
template <class M>
void coefficients_cpu(const Tensor& alpha, const Tensor& delta, const Tensor& theta, const Tensor& gamma,
                      const CemaCoefficients& c, int64_t D, int64_t N) {
  const M* a = alpha.data<M>();
  const M* b = delta.data<M>();
  const M* s = theta.data<M>();
  const M* g = gamma.data<M>();
  M* p = c.p.data<M>();
  M* q = c.q.data<M>();
  M* log_q = c.log_q.data<M>();
  M* gamma_out = c.gamma.data<M>();
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t i = d * N + n;
      const CemaMode<M> mode = cema_mode(a[i], b[i], s[d], Complex<M>(g[2 * i], g[2 * i + 1]), n, N);
      p[i] = mode.p;
      q[2 * i] = mode.q.re;
      q[2 * i + 1] = mode.q.im;
      log_q[2 * i] = mode.log_q.re;
      log_q[2 * i + 1] = mode.log_q.im;
      gamma_out[2 * i] = mode.gamma.re;
      gamma_out[2 * i + 1] = mode.gamma.im;
    }
  }
}

}  // namespace

CemaCoefficients cema_coefficients(const Tensor& alpha, const Tensor& delta, const Tensor& theta, const Tensor& gamma,
                                   const Tensor& omega) {
  const Dims dims = check_parameters("cema_coefficients", alpha, delta, theta, gamma, omega);
  const int64_t D = dims.D, N = dims.N;
  const DType dtype = alpha.dtype();
  const Device device = alpha.device();
  CemaCoefficients c{Tensor::empty({D, N}, dtype, device), Tensor::empty({D, N, 2}, dtype, device),
                     Tensor::empty({D, N, 2}, dtype, device), Tensor::empty({D, N, 2}, dtype, device),
                     Tensor::empty({D}, dtype, device)};
  copy_(c.omega, reshape(omega.detach(), {D}));
  const Tensor a = contiguous(alpha.detach()), b = contiguous(delta.detach()), s = contiguous(theta.detach());
  if (device.is_cpu()) {
    const Tensor g = contiguous(gamma.detach());
    if (dtype == DType::f64) coefficients_cpu<double>(a, b, s, g, c, D, N);
    else coefficients_cpu<float>(a, b, s, g, c, D, N);
    return c;
  }
  MGL_CHECK(dtype == DType::f32, "cema_coefficients: CUDA parameters must be f32, got ", alpha.describe());
  DeviceGuard guard(device);
  const Tensor g = complex_ready(gamma);
  cuda::CemaCoefficientsArgs args;
  args.channels = D;
  args.modes = N;
  args.alpha = pointer<const float>(a);
  args.delta = pointer<const float>(b);
  args.theta = pointer<const float>(s);
  args.gamma_raw = pointer<const Complex<float>>(g);
  args.p = pointer<float>(c.p);
  args.q = pointer<Complex<float>>(c.q);
  args.log_q = pointer<Complex<float>>(c.log_q);
  args.gamma = pointer<Complex<float>>(c.gamma);
  MGL_ON_CUDA(cuda::cema_coefficients(args, compute_stream(device)));
  return c;
}

CemaOutput cema(const Tensor& x, const Tensor& alpha, const Tensor& delta, const Tensor& theta, const Tensor& gamma,
                const Tensor& omega, const Tensor& h_in, bool return_state) {
  auto saved = std::make_shared<Saved>();
  saved->dims = check_inputs("cema", x, alpha, delta, theta, gamma, omega, h_in);
  MGL_CHECK(x.is_cpu() || alpha.dtype() == DType::f32, "cema: CUDA parameters must be f32, got ", alpha.describe());
  saved->x = contiguous(x.detach());
  saved->alpha = contiguous(alpha.detach());
  saved->delta = contiguous(delta.detach());
  saved->theta = contiguous(theta.detach());
  saved->gamma = contiguous(gamma.detach());
  saved->omega = contiguous(omega.detach());
  if (h_in.defined()) saved->h_in = complex_ready(h_in);
  saved->coefficients = cema_coefficients(alpha, delta, theta, gamma, omega);

  CemaOutput out = x.is_cpu() ? forward_cpu(*saved, return_state) : forward_cuda(*saved, return_state);
  autograd::record("cema", {x, alpha, delta, theta, gamma, omega, h_in}, {out.y, out.h_out},
                   [saved](const std::vector<Tensor>& g) {
                     const Saved& s = *saved;
                     // A missing dy (only h_out was used) is a zero gradient; a missing G_{h_out}
                     // is left out of the sweep.
                     const Tensor dy = g[0].defined() ? contiguous(cast(g[0], s.x.dtype()))
                                                      : Tensor::zeros(s.x.shape(), s.x.dtype(), s.x.device());
                     const Tensor g_out = g[1].defined() ? complex_ready(cast(g[1], s.alpha.dtype())) : Tensor();
                     const Grads d = s.x.is_cpu() ? backward_cpu(s, dy, g_out) : backward_cuda(s, dy, g_out);
                     return std::vector<Tensor>{d.dx, d.alpha, d.delta, d.theta, d.gamma, d.omega, d.h_in};
                   });
  return out;
}

Tensor cema_step(const Tensor& x_t, const CemaCoefficients& coefficients, const Tensor& h) {
  const CemaCoefficients& c = coefficients;
  MGL_CHECK(c.p.defined() && c.q.defined() && c.gamma.defined() && c.omega.defined() && c.p.dim() == 2, "cema_step: ",
            "coefficients must come from cema_coefficients()");
  const int64_t D = c.p.size(0), N = c.p.size(1);
  MGL_CHECK(x_t.defined() && x_t.dim() == 2 && x_t.size(1) == D, "cema_step: x_t must be [B, D] with D = ", D,
            ", got ", x_t.defined() ? x_t.describe() : std::string("an undefined tensor"));
  const int64_t B = x_t.size(0);
  const Shape state_shape{B, D, N, 2};
  MGL_CHECK(h.defined() && h.shape() == state_shape, "cema_step: h must be [B, D, N, 2] = ", shape_str(state_shape),
            ", got ", h.defined() ? h.describe() : std::string("an undefined tensor"));
  MGL_CHECK(h.dtype() == c.p.dtype() && h.device() == c.p.device() && x_t.device() == c.p.device(), "cema_step: h ",
            h.describe(), " and x_t ", x_t.describe(), " must match the coefficients (p ", c.p.describe(),
            ") in device, and h in dtype");
  MGL_CHECK(h.is_contiguous(), "cema_step: h is updated in place and must be contiguous, got ", h.describe());
  if (c.p.dtype() == DType::f64)
    MGL_CHECK(x_t.dtype() == DType::f64, "cema_step: f64 coefficients need an f64 x_t, got ", x_t.describe());
  else
    MGL_CHECK(x_t.dtype() == DType::f32 || x_t.dtype() == DType::bf16, "cema_step: f32 coefficients need an f32 or ",
              "bf16 x_t, got ", x_t.describe());

  if (x_t.is_cpu()) {
    const Reference r({B, 1, D, N}, c);
    std::vector<C64> state = complex_values(h);
    std::vector<double> y;
    std::vector<C64> next;
    reference_forward(r, x_t.to_vector<double>(), state, y, next);
    copy_(h, complex_tensor(next, state_shape, h.dtype()));
    return Tensor::from_vector(y, {B, D}, x_t.dtype());
  }
  MGL_CHECK(reinterpret_cast<uintptr_t>(h.raw_data()) % 8 == 0, "cema_step: h ", h.describe(),
            " is not aligned for complex access");
  DeviceGuard guard(x_t.device());
  const Tensor x = contiguous(x_t.detach());
  Tensor y = Tensor::empty({B, D}, x_t.dtype(), x_t.device());
  cuda::CemaStepArgs args;
  args.batch = B;
  args.channels = D;
  args.modes = N;
  args.dtype = x.dtype();
  args.x = x.raw_data();
  args.coefficients = coefficient_pointers(c);
  args.h = pointer<Complex<float>>(h);
  args.y = y.raw_data();
  MGL_ON_CUDA(cuda::cema_step(args, compute_stream(x.device())));
  return y;
}

}  // namespace mgl

// timestep_norm: causal group normalisation with running statistics (docs/megalodon.md §2.2).
//
// Forward, per sequence b and group g of dg = D / G channels, from the incoming state (n, mu, v):
//   step moments  m_t = mean_k x[t,k],   s_t = mean_k (x[t,k] - m_t)^2              (k in group g)
//   Welford fold  n_t = n_{t-1} + 1,  c1 = n_{t-1} / n_t,  c2 = 1 / n_t:
//                 mu_t = c1 mu_{t-1} + c2 m_t
//                 v_t  = c1 v_{t-1} + c2 s_t + c1 c2 (m_t - mu_{t-1})^2
//   output        r_t = 1 / sqrt(v_t + eps),   y[t,k] = (x[t,k] - mu_t) r_t (weight[k] + 1) + bias[k]
// so (mu_t, v_t) are the mean and population variance of all (n_0 + t + 1) dg values seen (paper
// Eq. 4 when n_0 = 0). A padded step has weight 0: y = 0 and the state passes through (c1 = 1, c2 = 0).
//
// Backward (§2.2.3), w = weight + 1. Sweep t = L-1 .. 0 carrying adjoints (a_mu, a_v) that start as
// the gradients reaching the outgoing state:
//   P_t = sum_k dy w,   S_t = sum_k dy w (x - mu_t)
//   Dmu = a_mu - r_t P_t,   Dv = a_v - r_t^3 S_t / 2                 (total adjoints of mu_t and v_t)
//   dm = c2 Dmu + 2 c1 c2 (m_t - mu_{t-1}) Dv,   ds = c2 Dv          (adjoints of m_t and s_t)
//   dx[t,k] = dy r_t w + dm / dg + 2 ds (x - m_t) / dg
//   a_mu <- c1 Dmu - 2 c1 c2 (m_t - mu_{t-1}) Dv,   a_v <- c1 Dv
//   dweight += dy (x - mu_t) r_t,   dbias += dy
// After the sweep (a_mu, a_v) are the gradients of the incoming mean and variance; the count gets none.
//
// The CPU path is exactly these two loops, computed in f64 for every dtype: it is the oracle the CUDA
// scan (cuda/timestep_norm.cu) is tested against, and f32 running sums over long sequences drift. The
// fold, the adjoint step and the prior are base/timestep_norm_math.h's, the lines the kernels run too;
// cuda/timestep_norm.h is needed only to launch them.
#include "ops/timestep_norm.h"

#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "core/cuda_context.h"
#include "base/timestep_norm_math.h"
#include "core/strided.h"
#include "cuda/timestep_norm.h"
#include "ops/ops.h"

namespace mgl {

namespace {

constexpr const char* kOp = "timestep_norm";

// What the forward hands to the backward (all contiguous, detached).
struct Saved {
  TimestepNormSizes sizes;
  Tensor x, weight, mask, mean_in;
  Tensor step_mean, step_rstd;  // [B, L, G] mu_t and r_t in the state dtype
  Tensor count_out;             // CPU: the backward sweep counts down from here
  Tensor chunk_count;           // CUDA: the count before each chunk of the scan
};

PaddingMask mask_view(const Tensor& mask) {
  return mask.defined() ? PaddingMask{mask.raw_data(), mask.dtype()} : PaddingMask{};
}

template <class T>
double to_f64(T v) {
  if constexpr (std::is_same_v<T, bf16>) return static_cast<float>(v);
  else return static_cast<double>(v);
}
template <class T>
T from_f64(double v) {
  if constexpr (std::is_same_v<T, bf16>) return bf16(static_cast<float>(v));
  else return static_cast<T>(v);
}

// Mean and population variance of one step's dg values of one group (two passes).
template <class T>
std::pair<double, double> group_moments(const T* values, int64_t dg) {
  double mean = 0.0, var = 0.0;
  for (int64_t k = 0; k < dg; ++k) mean += to_f64(values[k]);
  mean /= static_cast<double>(dg);
  for (int64_t k = 0; k < dg; ++k) var += (to_f64(values[k]) - mean) * (to_f64(values[k]) - mean);
  return {mean, var / static_cast<double>(dg)};
}

template <class T, class S>
void forward_cpu(const TimestepNormSizes& n, double eps, const T* x, const T* weight, const T* bias,
                 const PaddingMask& mask, const int64_t* count_in, const S* mean_in, const S* var_in, T* y,
                 int64_t* count_out, S* mean_out, S* var_out, S* step_mean, S* step_rstd) {
  const int64_t B = n.batch, L = n.length, D = n.dim, G = n.groups, dg = D / G;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<RunningMoments<double>> state(G);
    for (int64_t g = 0; g < G; ++g) state[g] = {count_in[b], mean_in[b * G + g], var_in[b * G + g]};
    for (int64_t t = 0; t < L; ++t) {
      const int64_t row = b * L + t;
      const bool padded = mask.padded(row);
      for (int64_t g = 0; g < G; ++g) {
        const T* xs = x + row * D + g * dg;
        if (!padded) {
          const auto [m, s] = group_moments(xs, dg);
          state[g] = merge(state[g], RunningMoments<double>{1, m, s});
        }
        const double mu = state[g].mean, r = 1.0 / std::sqrt(state[g].var + eps);
        step_mean[row * G + g] = static_cast<S>(mu);
        step_rstd[row * G + g] = static_cast<S>(r);
        for (int64_t k = 0; k < dg; ++k) {
          const int64_t c = g * dg + k;
          const double out = (to_f64(xs[k]) - mu) * r * (to_f64(weight[c]) + 1.0) + to_f64(bias[c]);
          y[row * D + c] = from_f64<T>(padded ? 0.0 : out);
        }
      }
    }
    count_out[b] = state[0].count;  // the same in every group
    for (int64_t g = 0; g < G; ++g) {
      mean_out[b * G + g] = static_cast<S>(state[g].mean);
      var_out[b * G + g] = static_cast<S>(state[g].var);
    }
  }
}

template <class T, class S>
void backward_cpu(const TimestepNormSizes& n, const T* dy, const S* dmean_out, const S* dvar_out, const T* x,
                  const T* weight, const PaddingMask& mask, const S* mean_in, const int64_t* count_out,
                  const S* step_mean, const S* step_rstd, T* dx, T* dweight, T* dbias, S* dmean_in, S* dvar_in) {
  const int64_t B = n.batch, L = n.length, D = n.dim, G = n.groups, dg = D / G;
  std::vector<double> dw(D, 0.0), db(D, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t count = count_out[b];
    std::vector<NormAdjoint<double>> a(G);
    for (int64_t g = 0; g < G; ++g) a[g] = {dmean_out[b * G + g], dvar_out[b * G + g]};
    for (int64_t t = L - 1; t >= 0; --t) {
      const int64_t row = b * L + t;
      if (mask.padded(row)) {  // y was a constant 0 and the state passed through
        for (int64_t c = 0; c < D; ++c) dx[row * D + c] = from_f64<T>(0.0);
        continue;
      }
      for (int64_t g = 0; g < G; ++g) {
        const double mu = step_mean[row * G + g], r = step_rstd[row * G + g];
        const double mu_prev = t == 0 ? mean_in[b * G + g] : step_mean[(row - 1) * G + g];
        double m = 0.0, p = 0.0, s = 0.0;
        for (int64_t c = g * dg; c < (g + 1) * dg; ++c) {
          const double xv = to_f64(x[row * D + c]), dyw = to_f64(dy[row * D + c]) * (to_f64(weight[c]) + 1.0);
          m += xv;
          p += dyw;
          s += dyw * (xv - mu);
        }
        m /= static_cast<double>(dg);
        double dm = 0.0, ds = 0.0;
        adjoint_step(a[g], count, r, p, s, m, mu_prev, dm, ds);
        for (int64_t c = g * dg; c < (g + 1) * dg; ++c) {
          const double xv = to_f64(x[row * D + c]), dyv = to_f64(dy[row * D + c]);
          dx[row * D + c] = from_f64<T>(dyv * r * (to_f64(weight[c]) + 1.0) + dm / static_cast<double>(dg) +
                                        2.0 * ds * (xv - m) / static_cast<double>(dg));
          dw[c] += dyv * (xv - mu) * r;
          db[c] += dyv;
        }
      }
      --count;
    }
    for (int64_t g = 0; g < G; ++g) {
      dmean_in[b * G + g] = static_cast<S>(a[g].mean);
      dvar_in[b * G + g] = static_cast<S>(a[g].var);
    }
  }
  for (int64_t c = 0; c < D; ++c) {
    dweight[c] = from_f64<T>(dw[c]);
    dbias[c] = from_f64<T>(db[c]);
  }
}

void check_same_device(const Tensor& x, const char* name, const Tensor& t) {
  MGL_CHECK(t.device() == x.device(), kOp, ": ", name, " ", t.describe(), " is on another device than x ",
            x.describe());
}

void check_inputs(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                  const TimestepNormState& state, double eps, const Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  MGL_CHECK(groups > 0 && D > 0 && D % groups == 0, kOp, ": the width D = ", D, " of x ", x.describe(),
            " is not divisible into ", groups, " groups");
  MGL_CHECK(eps >= 0.0 && std::isfinite(eps), kOp, ": eps must be finite and non-negative, got ", eps);
  const std::pair<const char*, const Tensor*> params[] = {{"weight", &weight}, {"bias", &bias}};
  for (const auto& [name, p] : params) {
    MGL_CHECK(p->defined(), kOp, ": ", name, " is undefined");
    MGL_CHECK(p->shape() == Shape{D}, kOp, ": ", name, " must have shape [", D, "] for x ", x.describe(), ", got ",
              p->describe());
    MGL_CHECK(p->dtype() == x.dtype(), kOp, ": ", name, " ", p->describe(), " and x ", x.describe(),
              " differ in dtype");
    check_same_device(x, name, *p);
  }
  const DType state_dtype = timestep_norm_state_dtype(x.dtype());
  MGL_CHECK(state.count.defined() && state.count.shape() == Shape{B} && state.count.dtype() == DType::i64, kOp,
            ": the state count must be i64 [", B, "], got ", state.count.defined() ? state.count.describe() : "undefined");
  check_same_device(x, "state count", state.count);
  const std::pair<const char*, const Tensor*> moments[] = {{"mean", &state.mean}, {"var", &state.var}};
  for (const auto& [name, p] : moments) {
    MGL_CHECK(p->defined() && p->shape() == Shape({B, groups}) && p->dtype() == state_dtype, kOp, ": the state ",
              name, " must be ", dtype_name(state_dtype), " [", B, ", ", groups, "] for x ", x.describe(), ", got ",
              p->defined() ? p->describe() : "undefined");
    check_same_device(x, name, *p);
  }
  if (mask.defined()) {
    MGL_CHECK(mask.shape() == Shape({B, L}), kOp, ": padding_mask must have shape [", B, ", ", L, "], got ",
              mask.describe());
    check_same_device(x, "padding_mask", mask);
  }
  // The count is checked where the host holds it. A CUDA count is not read back (that would make every
  // call wait for the device): it comes from timestep_norm_initial_state, an earlier call (which only adds
  // to its input's) or a copy of a host-made one (the chunk relay, nn/chunk_parallel.h), all non-negative.
  if (state.count.is_cpu())
    for (int64_t n : state.count.to_vector<int64_t>())
      MGL_CHECK(n >= 0, kOp, ": the state count holds a negative value ", n);
}

std::vector<Tensor> timestep_norm_backward(const Saved& saved, const std::vector<Tensor>& grads) {
  const TimestepNormSizes& n = saved.sizes;
  const Tensor& x = saved.x;
  const DType state_dtype = timestep_norm_state_dtype(x.dtype());
  // A gradient that did not arrive is zero (e.g. only the outgoing state was used).
  auto gradient = [&](const Tensor& g, const Shape& shape, DType dtype) {
    return g.defined() ? contiguous(g) : Tensor::zeros(shape, dtype, x.device());
  };
  const Tensor dy = gradient(grads[0], x.shape(), x.dtype());
  const Tensor dmean_out = gradient(grads[1], {n.batch, n.groups}, state_dtype);
  const Tensor dvar_out = gradient(grads[2], {n.batch, n.groups}, state_dtype);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor dweight = Tensor::empty({n.dim}, x.dtype(), x.device());
  Tensor dbias = Tensor::empty({n.dim}, x.dtype(), x.device());
  Tensor dmean_in = Tensor::empty({n.batch, n.groups}, state_dtype, x.device());
  Tensor dvar_in = Tensor::empty({n.batch, n.groups}, state_dtype, x.device());

  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      using S = typename compute_type<T>::type;
      backward_cpu<T, S>(n, dy.data<T>(), dmean_out.data<S>(), dvar_out.data<S>(), x.data<T>(),
                         saved.weight.data<T>(), mask_view(saved.mask), saved.mean_in.data<S>(),
                         saved.count_out.data<int64_t>(), saved.step_mean.data<S>(), saved.step_rstd.data<S>(),
                         dx.data<T>(), dweight.data<T>(), dbias.data<T>(), dmean_in.data<S>(), dvar_in.data<S>());
    });
  } else {
    DeviceGuard guard(x.device());
    const Tensor workspace = Tensor::empty({cuda::timestep_norm_backward_workspace(n)}, state_dtype, x.device());
    cuda::TimestepNormBackwardArgs args;
    args.sizes = n;
    args.dtype = x.dtype();
    args.dy = dy.raw_data();
    args.dmean_out = dmean_out.raw_data();
    args.dvar_out = dvar_out.raw_data();
    args.x = x.raw_data();
    args.weight = saved.weight.raw_data();
    args.mask = mask_view(saved.mask);
    args.mean_in = saved.mean_in.raw_data();
    args.step_mean = saved.step_mean.raw_data();
    args.step_rstd = saved.step_rstd.raw_data();
    args.chunk_count = saved.chunk_count.data<int64_t>();
    args.dx = dx.raw_data();
    args.dweight = dweight.raw_data();
    args.dbias = dbias.raw_data();
    args.dmean_in = dmean_in.raw_data();
    args.dvar_in = dvar_in.raw_data();
    args.workspace = workspace.raw_data();
    MGL_ON_CUDA(cuda::timestep_norm_backward(args, compute_stream(x.device())));
  }
  return {dx, dweight, dbias, dmean_in, dvar_in};
}

}  // namespace

DType timestep_norm_state_dtype(DType x_dtype) { return x_dtype == DType::f64 ? DType::f64 : DType::f32; }

TimestepNormState timestep_norm_initial_state(int64_t batch, int64_t groups, DType x_dtype, Device device) {
  MGL_CHECK(batch >= 0 && groups > 0, kOp, ": initial state needs batch >= 0 and groups > 0, got batch ", batch,
            " and groups ", groups);
  const DType dtype = timestep_norm_state_dtype(x_dtype);
  constexpr RunningMoments<double> prior = timestep_norm_prior<double>();
  return {Tensor::full({batch}, static_cast<double>(prior.count), DType::i64, device),
          Tensor::full({batch, groups}, prior.mean, dtype, device),
          Tensor::full({batch, groups}, prior.var, dtype, device)};
}

TimestepNormOutput timestep_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                                 const TimestepNormState* incoming, double eps, const Tensor& padding_mask) {
  MGL_CHECK(x.defined() && is_floating(x.dtype()) && x.dim() == 3, kOp,
            ": expected a floating x of shape [B, L, D], got ", x.defined() ? x.describe() : "undefined");
  MGL_CHECK(groups > 0, kOp, ": groups must be positive, got ", groups);
  const TimestepNormState in =
      incoming ? *incoming : timestep_norm_initial_state(x.size(0), groups, x.dtype(), x.device());
  check_inputs(x, weight, bias, groups, in, eps, padding_mask);

  const Device device = x.device();
  const DType state_dtype = timestep_norm_state_dtype(x.dtype());
  const TimestepNormSizes n{x.size(0), x.size(1), x.size(2), groups};
  Saved saved;
  saved.sizes = n;
  saved.x = contiguous(x.detach());
  saved.weight = contiguous(weight.detach());
  saved.mask = padding_mask.defined() ? contiguous(padding_mask.detach()) : Tensor();
  saved.mean_in = contiguous(in.mean.detach());
  saved.step_mean = Tensor::empty({n.batch, n.length, n.groups}, state_dtype, device);
  saved.step_rstd = Tensor::empty({n.batch, n.length, n.groups}, state_dtype, device);
  const Tensor bias_c = contiguous(bias.detach()), count_in = contiguous(in.count), var_in = contiguous(in.var.detach());

  TimestepNormOutput out;
  out.y = Tensor::empty(x.shape(), x.dtype(), device);
  out.state = {Tensor::empty({n.batch}, DType::i64, device), Tensor::empty({n.batch, n.groups}, state_dtype, device),
               Tensor::empty({n.batch, n.groups}, state_dtype, device)};
  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), kOp, [&](auto tag) {
      using T = decltype(tag);
      using S = typename compute_type<T>::type;
      forward_cpu<T, S>(n, eps, saved.x.data<T>(), saved.weight.data<T>(), bias_c.data<T>(), mask_view(saved.mask),
                        count_in.data<int64_t>(), saved.mean_in.data<S>(), var_in.data<S>(), out.y.data<T>(),
                        out.state.count.data<int64_t>(), out.state.mean.data<S>(), out.state.var.data<S>(),
                        saved.step_mean.data<S>(), saved.step_rstd.data<S>());
    });
    saved.count_out = out.state.count.detach();
  } else {
    DeviceGuard guard(device);
    saved.chunk_count = Tensor::empty({n.batch, cuda::timestep_norm_chunks(n) + 1}, DType::i64, device);
    const Tensor workspace = Tensor::empty({cuda::timestep_norm_forward_workspace(n)}, state_dtype, device);
    cuda::TimestepNormForwardArgs args;
    args.sizes = n;
    args.dtype = x.dtype();
    args.eps = eps;
    args.x = saved.x.raw_data();
    args.weight = saved.weight.raw_data();
    args.bias = bias_c.raw_data();
    args.mask = mask_view(saved.mask);
    args.count_in = count_in.data<int64_t>();
    args.mean_in = saved.mean_in.raw_data();
    args.var_in = var_in.raw_data();
    args.y = out.y.raw_data();
    args.count_out = out.state.count.data<int64_t>();
    args.mean_out = out.state.mean.raw_data();
    args.var_out = out.state.var.raw_data();
    args.step_mean = saved.step_mean.raw_data();
    args.step_rstd = saved.step_rstd.raw_data();
    args.chunk_count = saved.chunk_count.data<int64_t>();
    args.workspace = workspace.raw_data();
    MGL_ON_CUDA(cuda::timestep_norm_forward(args, compute_stream(device)));
  }

  autograd::record(kOp, {x, weight, bias, in.mean, in.var}, {out.y, out.state.mean, out.state.var},
                   [saved](const std::vector<Tensor>& grads) { return timestep_norm_backward(saved, grads); });
  return out;
}

}  // namespace mgl

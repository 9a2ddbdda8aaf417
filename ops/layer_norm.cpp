// layer_norm over the last dim (n elements) of x:
//   mu = mean(x),  rstd = (mean((x - mu)^2) + eps)^(-1/2),  xhat = (x - mu) rstd,  y = xhat * w + b.
// Backward, with g = dy * w (w = 1 when absent):
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dw = sum over rows of dy * xhat,
//   db = sum over rows of dy.
// (y reaches x directly and through mu and rstd: d/dmu gives the -mean(g) term, d/drstd the
// -xhat * mean(g * xhat) term.)
//
// One fused node. The statistics of each row (mean, rstd) are kept in f32 (f64 for f64 tensors)
// and saved for the backward, which recomputes xhat from them. This file also holds the computation shared with rms_norm
// (ops/detail/layer_norm.h): the CPU reference loops below and the dispatch to cuda/layer_norm.
#include "ops/detail/layer_norm.h"

#include <cmath>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/layer_norm.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace detail {

namespace {

DType statistics_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

// t as a contiguous buffer (t itself when it already is one), outside the graph.
Tensor packed(const Tensor& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_(out, t);
  return out;
}

void* pointer(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
template <class T>
T* typed(const Tensor& t) {
  return static_cast<T*>(pointer(t));
}

// ---- CPU reference (the test oracle) ------------------------------------------------------------
// T is the storage type, M the statistics type (what is saved). Sums are accumulated in double,
// whatever T: the oracle should be more accurate than the kernels it judges (the CUDA kernels sum
// in M with tree reductions).

template <class T, class M>
void forward_cpu(const T* x, const T* w, const T* b, T* y, M* mean, M* rstd, int64_t rows, int64_t n, double eps,
                 bool center) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    double mu = 0;
    if (center) {
      for (int64_t c = 0; c < n; ++c) mu += double(xr[c]);
      mu /= n;
    }
    double var = 0;
    for (int64_t c = 0; c < n; ++c) var += (double(xr[c]) - mu) * (double(xr[c]) - mu);
    const double rs = 1.0 / std::sqrt(var / n + eps);
    for (int64_t c = 0; c < n; ++c) {
      double v = (double(xr[c]) - mu) * rs;
      if (w) v *= double(w[c]);
      if (b) v += double(b[c]);
      y[r * n + c] = T(static_cast<M>(v));
    }
    mean[r] = static_cast<M>(mu);
    rstd[r] = static_cast<M>(rs);
  }
}

template <class T, class M>
void backward_cpu(const T* x, const T* w, const M* mean, const M* rstd, const T* dy, T* dx, T* dw, T* db,
                  int64_t rows, int64_t n, bool center) {
  std::vector<double> sum_w(n, 0.0), sum_b(n, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    const T* dyr = dy + r * n;
    auto xhat_at = [&](int64_t c) { return (double(xr[c]) - double(mean[r])) * double(rstd[r]); };
    auto g_at = [&](int64_t c) { return w ? double(dyr[c]) * double(w[c]) : double(dyr[c]); };
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t c = 0; c < n; ++c) {
      sum_g += g_at(c);
      sum_g_xhat += g_at(c) * xhat_at(c);
      sum_w[c] += double(dyr[c]) * xhat_at(c);
      sum_b[c] += double(dyr[c]);
    }
    if (!dx) continue;
    const double mean_g = center ? sum_g / n : 0.0, mean_g_xhat = sum_g_xhat / n;
    for (int64_t c = 0; c < n; ++c)
      dx[r * n + c] = T(static_cast<M>(double(rstd[r]) * (g_at(c) - mean_g - xhat_at(c) * mean_g_xhat)));
  }
  for (int64_t c = 0; c < n; ++c) {
    if (dw) dw[c] = T(static_cast<M>(sum_w[c]));
    if (db) db[c] = T(static_cast<M>(sum_b[c]));
  }
}

// What the backward needs: the contiguous input, the weight, and the row statistics.
struct Saved {
  Tensor x, weight, mean, rstd;
  bool center = true;
};

std::vector<Tensor> norm_backward(const Saved& s, const Tensor& grad, bool need_x, bool need_w, bool need_b) {
  const Tensor dy = packed(grad);
  const int64_t n = s.x.size(-1), rows = s.x.numel() / n;
  const Tensor dx = need_x ? Tensor::empty(s.x.shape(), s.x.dtype(), s.x.device()) : Tensor();
  const Tensor dw = need_w ? Tensor::empty({n}, s.x.dtype(), s.x.device()) : Tensor();
  const Tensor db = need_b ? Tensor::empty({n}, s.x.dtype(), s.x.device()) : Tensor();
  if (s.x.is_cpu()) {
    dispatch_floating(s.x.dtype(), "norm backward", [&](auto tag) {
      using T = decltype(tag);
      using M = typename compute_type<T>::type;
      backward_cpu<T, M>(typed<const T>(s.x), typed<const T>(s.weight), typed<const M>(s.mean), typed<const M>(s.rstd),
                         typed<const T>(dy), typed<T>(dx), typed<T>(dw), typed<T>(db), rows, n, s.center);
    });
  } else {
    DeviceGuard guard(s.x.device());
    MGL_ON_CUDA({
      // Room for the per-block partial sums of the weight and bias gradients.
      const Tensor workspace = need_w || need_b ? Tensor::empty({cuda::norm_backward_workspace(rows, n)},
                                                                statistics_dtype(s.x.dtype()), s.x.device())
                                                : Tensor();
      cuda::NormBackwardArgs args;
      args.rows = rows;
      args.cols = n;
      args.dtype = s.x.dtype();
      args.center = s.center;
      args.x = pointer(s.x);
      args.weight = pointer(s.weight);
      args.mean = pointer(s.mean);
      args.rstd = pointer(s.rstd);
      args.dy = pointer(dy);
      args.dx = pointer(dx);
      args.dweight = pointer(dw);
      args.dbias = pointer(db);
      args.workspace = pointer(workspace);
      cuda::norm_backward(args, compute_stream(s.x.device()));
    });
  }
  return {dx, dw, db};
}

}  // namespace

Tensor normalize_last_dim(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          bool center) {
  check_floating(op, x);
  MGL_CHECK(x.dim() >= 1 && x.size(-1) > 0, op, ": expected a tensor with a non-empty last dim, got ", x.describe());
  const int64_t n = x.size(-1), rows = x.numel() / n;
  for (const auto& [name, param] : {std::pair{"weight", weight}, std::pair{"bias", bias}}) {
    if (!param.defined()) continue;
    check_compatible(op, x, param);
    MGL_CHECK(param.shape() == Shape{n}, op, ": ", name, " ", param.describe(), " does not match the last dim of ",
              x.describe(), " (expected [", n, "])");
  }
  MGL_CHECK(eps >= 0.0, op, ": eps must be non-negative, got ", eps);

  Saved saved{packed(x), packed(weight), Tensor(), Tensor(), center};
  const Tensor b = packed(bias);
  saved.mean = Tensor::empty({rows}, statistics_dtype(x.dtype()), x.device());
  saved.rstd = Tensor::empty({rows}, statistics_dtype(x.dtype()), x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      using M = typename compute_type<T>::type;
      forward_cpu<T, M>(typed<const T>(saved.x), typed<const T>(saved.weight), typed<const T>(b), typed<T>(y),
                        typed<M>(saved.mean), typed<M>(saved.rstd), rows, n, eps, center);
    });
  } else {
    DeviceGuard guard(x.device());
    cuda::NormForwardArgs args;
    args.rows = rows;
    args.cols = n;
    args.dtype = x.dtype();
    args.eps = eps;
    args.center = center;
    args.x = pointer(saved.x);
    args.weight = pointer(saved.weight);
    args.bias = pointer(b);
    args.y = pointer(y);
    args.mean = pointer(saved.mean);
    args.rstd = pointer(saved.rstd);
    MGL_ON_CUDA(cuda::norm_forward(args, compute_stream(x.device())));
  }

  saved.x = saved.x.detach();
  if (saved.weight.defined()) saved.weight = saved.weight.detach();
  autograd::record(op, {x, weight, bias}, {y},
                   [saved, need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad(),
                    need_b = bias.defined() && bias.requires_grad()](const std::vector<Tensor>& g) {
                     return norm_backward(saved, g[0], need_x, need_w, need_b);
                   });
  return y;
}

}  // namespace detail

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return detail::normalize_last_dim("layer_norm", x, weight, bias, eps, true);
}

}  // namespace mgl

// softmax over dim: y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (the shift by the max
// changes nothing mathematically and keeps exp from overflowing).
// Backward: dy/dx is diag(y) - y y^T, so dx = y * (dy - sum_j dy_j y_j).
//
// softmax and log_softmax share the fused node below: the dim is moved last and the input made
// contiguous (a copy only when dim is not already the innermost contiguous dim), the rows are
// computed by the CPU loop or the CUDA kernel, and the result is permuted back as a view.
#include <cmath>
#include "ops/detail/softmax.h"

#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/softmax.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace detail {

namespace {

// CPU references: the formulas of the kernels, row by row, in f64 for every dtype (the oracles the
// kernels are tested against).
void softmax_rows_cpu(bool log, const Tensor& x, const Tensor& y, int64_t rows, int64_t cols) {
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = static_cast<const T*>(x.raw_data()) + r * cols;
      T* out = y.data<T>() + r * cols;
      const double shift = log_sum_exp(in, cols);
      for (int64_t c = 0; c < cols; ++c) {
        const double shifted = static_cast<double>(in[c]) - shift;
        out[c] = static_cast<T>(log ? shifted : std::exp(shifted));
      }
    }
  });
}

void softmax_backward_rows_cpu(bool log, const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows,
                               int64_t cols) {
  dispatch_floating(y.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    for (int64_t r = 0; r < rows; ++r) {
      const T* py = static_cast<const T*>(y.raw_data()) + r * cols;
      const T* pdy = static_cast<const T*>(dy.raw_data()) + r * cols;
      T* pdx = dx.data<T>() + r * cols;
      double total = 0;  // sum(dy) for log-softmax, sum(dy * y) for softmax
      for (int64_t c = 0; c < cols; ++c)
        total += static_cast<double>(pdy[c]) * (log ? 1.0 : static_cast<double>(py[c]));
      for (int64_t c = 0; c < cols; ++c) {
        const double out = static_cast<double>(py[c]), grad = static_cast<double>(pdy[c]);
        pdx[c] = static_cast<T>(log ? grad - std::exp(out) * total : out * (grad - total));
      }
    }
  });
}

}  // namespace

Tensor softmax_node(const char* op, const Tensor& x, int64_t dim, bool log) {
  check_floating(op, x);
  MGL_CHECK(x.dim() > 0, op, ": needs a tensor with at least one dim, got ", x.describe());
  const int64_t d = normalize_dim(dim, x.dim(), op);
  // order: every other dim in place, then d; inverse undoes it.
  std::vector<int64_t> order, inverse(x.dim());
  for (int64_t k = 0; k < x.dim(); ++k)
    if (k != d) order.push_back(k);
  order.push_back(d);
  for (int64_t k = 0; k < x.dim(); ++k) inverse[order[k]] = k;

  const int64_t cols = x.size(d), rows = cols == 0 ? 0 : x.numel() / cols;
  const Tensor rows_in = contiguous(permute(x.detach(), order));
  const Tensor rows_out = Tensor::empty(rows_in.shape(), x.dtype(), x.device());
  if (x.is_cpu()) {
    softmax_rows_cpu(log, rows_in, rows_out, rows, cols);
  } else {
    DeviceGuard guard(x.device());
    cuda::SoftmaxForwardArgs args;
    args.log = log;
    args.rows = rows;
    args.cols = cols;
    args.dtype = x.dtype();
    args.x = rows_in.raw_data();
    args.y = rows_out.raw_data();
    MGL_ON_CUDA(cuda::softmax_forward(args, compute_stream(x.device())));
  }
  Tensor y = permute(rows_out, inverse);
  autograd::record(op, {x}, {y}, [log, rows_out, order, inverse, rows, cols](const std::vector<Tensor>& g) {
    const Tensor dy = contiguous(permute(g[0], order));
    const Tensor dx = Tensor::empty(rows_out.shape(), rows_out.dtype(), rows_out.device());
    if (dx.is_cpu()) {
      softmax_backward_rows_cpu(log, rows_out, dy, dx, rows, cols);
    } else {
      DeviceGuard guard(dx.device());
      cuda::SoftmaxBackwardArgs args;
      args.log = log;
      args.rows = rows;
      args.cols = cols;
      args.dtype = dx.dtype();
      args.y = rows_out.raw_data();
      args.dy = dy.raw_data();
      args.dx = dx.raw_data();
      MGL_ON_CUDA(cuda::softmax_backward(args, compute_stream(dx.device())));
    }
    return std::vector<Tensor>{permute(dx, inverse)};
  });
  return y;
}

}  // namespace detail

Tensor softmax(const Tensor& x, int64_t dim) { return detail::softmax_node("softmax", x, dim, false); }

}  // namespace mgl

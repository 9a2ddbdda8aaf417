// cross_entropy(logits [N, C], targets [N]): the mean negative log-likelihood of the targets under
// softmax(logits), over the n rows whose target is not ignore_index:
//   loss = (1/n) sum_{r counted} (lse_r - logits[r, t_r]),   lse_r = log sum_c exp(logits[r, c]),
// with lse_r computed stably (max + log sum exp(x - max)). One fused node (log-softmax + NLL).
// Backward: dlogits[r, c] = (softmax(logits_r)_c - [c == t_r]) * dloss / n, and 0 on ignored rows.
//
// All rows ignored (n = 0): the loss is 0 with a zero gradient. PyTorch's mean would give 0/0 =
// NaN; a batch that is all padding should add nothing to training rather than poison it.
// Targets are read on the host and checked: an id outside [0, C) that is not ignore_index throws,
// naming the id and its row, instead of reading out of bounds. Targets may be on the logits' device or
// on the CPU: CPU targets (a training batch) are read for free and uploaded without a wait
// (core/host_upload.h), so a CUDA step never waits for the device here; CUDA targets are copied to the host.
// The target check and the two passes over the rows are also linear_cross_entropy's (ops/detail/cross_entropy.h).
#include <cmath>
#include "autograd/node.h"
#include "base/cross_entropy_math.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/cross_entropy.h"
#include "ops/detail/cross_entropy.h"
#include "ops/detail/elementwise.h"
#include "ops/detail/softmax.h"
#include "ops/ops.h"

namespace mgl {

namespace detail {

CheckedTargets check_targets(const char* op, const Tensor& targets, int64_t classes, int64_t ignore_index,
                             const Device& device) {
  const std::vector<int64_t> ids = targets.to_vector<int64_t>();
  int64_t counted = 0;
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r] == ignore_index) continue;
    MGL_CHECK(ids[r] >= 0 && ids[r] < classes, op, ": target id ", ids[r], " at row ", r, " is outside [0, ",
              classes, ") and is not ignore_index (", ignore_index, ")");
    ++counted;
  }
  const Shape shape{static_cast<int64_t>(ids.size())};
  return {device.is_cpu() ? Tensor::from_vector(ids, shape) : contiguous(to(targets, device)), counted};
}

// On the CPU the reference: f64 math, stored in the loss type (the oracle of the CUDA kernel).
void cross_entropy_rows(const Tensor& logits, const Tensor& ids, int64_t ignore_index, const Tensor& row_loss,
                        const Tensor& row_lse) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (logits.is_cuda()) {
    DeviceGuard guard(logits.device());
    cuda::CrossEntropyForwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.ignore_index = ignore_index;
    args.dtype = logits.dtype();
    args.target_dtype = ids.dtype();
    args.logits = logits.raw_data();
    args.targets = ids.raw_data();
    args.row_loss = row_loss.raw_data();
    args.row_lse = row_lse.raw_data();
    MGL_ON_CUDA(cuda::cross_entropy_forward(args, compute_stream(logits.device())));
    return;
  }
  const int64_t* t = ids.data<int64_t>();
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using M = typename compute_type<T>::type;
    const T* x = static_cast<const T*>(logits.raw_data());
    M* loss = row_loss.data<M>();
    M* lse = row_lse.data<M>();
    for (int64_t r = 0; r < rows; ++r) {
      if (t[r] == ignore_index) {
        loss[r] = lse[r] = 0;
        continue;
      }
      const double row_lse_value = log_sum_exp(x + r * cols, cols);
      lse[r] = static_cast<M>(row_lse_value);
      loss[r] = static_cast<M>(cross_entropy_row_loss(row_lse_value, static_cast<double>(x[r * cols + t[r]])));
    }
  });
}

// On the CPU the reference: f64 math from the lse as stored in the loss type, as the kernel reads it.
void cross_entropy_row_grads(const Tensor& logits, const Tensor& ids, int64_t ignore_index, const Tensor& row_lse,
                             const Tensor& dloss, double scale, const Tensor& dlogits) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  if (logits.is_cuda()) {
    DeviceGuard guard(logits.device());
    cuda::CrossEntropyBackwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.ignore_index = ignore_index;
    args.dtype = logits.dtype();
    args.dlogits_dtype = dlogits.dtype();
    args.target_dtype = ids.dtype();
    args.scale = scale;
    args.logits = logits.raw_data();
    args.targets = ids.raw_data();
    args.row_lse = row_lse.raw_data();
    args.dloss = dloss.raw_data();
    args.dlogits = dlogits.raw_data();
    MGL_ON_CUDA(cuda::cross_entropy_backward(args, compute_stream(logits.device())));
    return;
  }
  const int64_t* t = ids.data<int64_t>();
  const double g = dloss.item() * scale;
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using M = typename compute_type<T>::type;
    dispatch_floating(dlogits.dtype(), "cross_entropy", [&](auto gradient_tag) {
      using D = decltype(gradient_tag);
      const T* x = static_cast<const T*>(logits.raw_data());
      const M* lse = row_lse.data<M>();
      D* dx = dlogits.data<D>();
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t i = r * cols + c;
          dx[i] = static_cast<D>(t[r] == ignore_index ? 0.0
                                                      : cross_entropy_logit_grad(static_cast<double>(x[i]),
                                                                                 static_cast<double>(lse[r]),
                                                                                 c == t[r], g));
        }
      }
    });
  });
}

}  // namespace detail

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  detail::check_floating("cross_entropy", logits);
  MGL_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", logits.describe());
  MGL_CHECK(targets.defined(), "cross_entropy: targets is an undefined tensor");
  MGL_CHECK(is_integer(targets.dtype()), "cross_entropy: targets must be i32 or i64, got ", targets.describe());
  const int64_t rows = logits.size(0), cols = logits.size(1);
  MGL_CHECK(targets.dim() == 1 && targets.size(0) == rows, "cross_entropy: targets ", targets.describe(),
            " do not match logits ", logits.describe(), " (expected [", rows, "])");
  MGL_CHECK(targets.device() == logits.device() || targets.is_cpu(), "cross_entropy: logits ", logits.describe(),
            " and targets ", targets.describe(), " are on different devices (targets may also be on the CPU)");
  MGL_CHECK(cols > 0, "cross_entropy: logits ", logits.describe(), " have no classes");

  const detail::CheckedTargets t = detail::check_targets("cross_entropy", targets, cols, ignore_index, logits.device());
  const double scale = t.counted > 0 ? 1.0 / static_cast<double>(t.counted) : 0.0;

  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor x = contiguous(logits.detach());
  const Tensor row_loss = Tensor::empty({rows}, loss_dtype, logits.device());
  const Tensor row_lse = Tensor::empty({rows}, loss_dtype, logits.device());
  detail::cross_entropy_rows(x, t.ids, ignore_index, row_loss, row_lse);
  Tensor loss = mul(sum(row_loss), scale);

  autograd::record("cross_entropy", {logits}, {loss},
                   [x, ids = t.ids, row_lse, scale, ignore_index](const std::vector<Tensor>& g) {
                     const Tensor dloss = contiguous(cast(g[0], row_lse.dtype()));
                     const Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
                     detail::cross_entropy_row_grads(x, ids, ignore_index, row_lse, dloss, scale, dx);
                     return std::vector<Tensor>{dx};
                   });
  return loss;
}

}  // namespace mgl

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
#include <cmath>
#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/cross_entropy.h"
#include "ops/detail/elementwise.h"
#include "ops/detail/softmax.h"
#include "ops/ops.h"

namespace mgl {

namespace {

// Throws on a target outside [0, classes) that is not ignore_index; returns how many rows count.
int64_t count_targets(const std::vector<int64_t>& ids, int64_t classes, int64_t ignore_index) {
  int64_t counted = 0;
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r] == ignore_index) continue;
    MGL_CHECK(ids[r] >= 0 && ids[r] < classes, "cross_entropy: target id ", ids[r], " at row ", r,
              " is outside [0, ", classes, ") and is not ignore_index (", ignore_index, ")");
    ++counted;
  }
  return counted;
}

// CPU reference of the per-row loss and log-sum-exp (both 0 on ignored rows), computed in f64 and
// stored in the loss type (the oracle of the CUDA kernels).
void forward_cpu(const Tensor& logits, const int64_t* ids, int64_t ignore_index, const Tensor& row_loss,
                 const Tensor& row_lse) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using M = typename compute_type<T>::type;
    const T* x = static_cast<const T*>(logits.raw_data());
    M* loss = row_loss.data<M>();
    M* lse = row_lse.data<M>();
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] == ignore_index) {
        loss[r] = lse[r] = 0;
        continue;
      }
      const double row_lse_value = detail::log_sum_exp(x + r * cols, cols);
      lse[r] = static_cast<M>(row_lse_value);
      loss[r] = static_cast<M>(row_lse_value - static_cast<double>(x[r * cols + ids[r]]));
    }
  });
}

// CPU reference of the backward, with g = dloss / n.
void backward_cpu(const Tensor& logits, const int64_t* ids, int64_t ignore_index, const Tensor& row_lse, double g,
                  const Tensor& dlogits) {
  const int64_t rows = logits.size(0), cols = logits.size(1);
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using M = typename compute_type<T>::type;
    const T* x = static_cast<const T*>(logits.raw_data());
    const M* lse = row_lse.data<M>();
    T* dx = dlogits.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t i = r * cols + c;
        if (ids[r] == ignore_index) {
          dx[i] = static_cast<T>(0.0);
          continue;
        }
        const double probability = std::exp(static_cast<double>(x[i]) - static_cast<double>(lse[r]));
        dx[i] = static_cast<T>((probability - (c == ids[r] ? 1.0 : 0.0)) * g);
      }
    }
  });
}

}  // namespace

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

  const std::vector<int64_t> ids = targets.to_vector<int64_t>();
  const int64_t counted = count_targets(ids, cols, ignore_index);
  const double scale = counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0;

  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor x = contiguous(logits.detach());
  const Tensor row_loss = Tensor::empty({rows}, loss_dtype, logits.device());
  const Tensor row_lse = Tensor::empty({rows}, loss_dtype, logits.device());
  // The targets as the backward reads them: the checked i64 ids on the CPU, the caller's on CUDA.
  const Tensor t = logits.is_cpu() ? Tensor::from_vector(ids, {rows}) : contiguous(to(targets, logits.device()));
  if (logits.is_cpu()) {
    forward_cpu(x, t.data<int64_t>(), ignore_index, row_loss, row_lse);
  } else {
    DeviceGuard guard(logits.device());
    cuda::CrossEntropyForwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.ignore_index = ignore_index;
    args.dtype = x.dtype();
    args.target_dtype = t.dtype();
    args.logits = x.raw_data();
    args.targets = t.raw_data();
    args.row_loss = row_loss.raw_data();
    args.row_lse = row_lse.raw_data();
    MGL_ON_CUDA(cuda::cross_entropy_forward(args, compute_stream(logits.device())));
  }
  Tensor loss = mul(sum(row_loss), scale);

  autograd::record("cross_entropy", {logits}, {loss},
                   [x, t, row_lse, scale, ignore_index](const std::vector<Tensor>& g) {
                     const Tensor dloss = contiguous(cast(g[0], row_lse.dtype()));
                     const Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
                     if (x.is_cpu()) {
                       backward_cpu(x, t.data<int64_t>(), ignore_index, row_lse, dloss.item() * scale, dx);
                     } else {
                       DeviceGuard guard(x.device());
                       cuda::CrossEntropyBackwardArgs args;
                       args.rows = x.size(0);
                       args.cols = x.size(1);
                       args.ignore_index = ignore_index;
                       args.dtype = x.dtype();
                       args.target_dtype = t.dtype();
                       args.scale = scale;
                       args.logits = x.raw_data();
                       args.targets = t.raw_data();
                       args.row_lse = row_lse.raw_data();
                       args.dloss = dloss.raw_data();
                       args.dlogits = dx.raw_data();
                       MGL_ON_CUDA(cuda::cross_entropy_backward(args, compute_stream(x.device())));
                     }
                     return std::vector<Tensor>{dx};
                   });
  return loss;
}

}  // namespace mgl

#include "ops/detail/reduce.h"

#include <cmath>
#include <optional>

#include "core/cuda_context.h"
#include "core/strided.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl::detail {

namespace {

// x as [outer, reduced, inner] in memory, when x is contiguous and its reduced dims (size-1 dims
// aside) are adjacent, so the column kernel can read it in place; nullopt otherwise.
struct Slabs {
  int64_t outer = 1, reduced = 1, inner = 1;
};
std::optional<Slabs> as_slabs(const Tensor& x, const Reduction& plan) {
  if (!x.is_contiguous()) return std::nullopt;
  Slabs slabs;
  slabs.reduced = plan.count;
  enum { before, inside, after } place = before;  // where we are relative to the run of reduced dims
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.size(d) == 1) continue;
    if (plan.reduced[d]) {
      if (place == after) return std::nullopt;
      place = inside;
    } else if (place == before) {
      slabs.outer *= x.size(d);
    } else {
      place = after;
      slabs.inner *= x.size(d);
    }
  }
  return slabs;
}

}  // namespace

Reduction plan_reduction(const char* op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_floating(op, x);
  Reduction plan;
  plan.reduced.assign(x.dim(), dims.empty());
  for (int64_t d : dims) {
    const int64_t dim = normalize_dim(d, x.dim(), op);
    MGL_CHECK(!plan.reduced[dim], op, ": dim ", d, " given twice for ", x.describe());
    plan.reduced[dim] = true;
  }
  for (int64_t d = 0; d < x.dim(); ++d) {
    plan.kept_shape.push_back(plan.reduced[d] ? 1 : x.size(d));
    if (plan.reduced[d]) plan.count *= x.size(d);
    else plan.out_shape.push_back(x.size(d));
  }
  if (keepdim) plan.out_shape = plan.kept_shape;
  return plan;
}

Tensor reduce_forward(const char* op, cuda::ReduceOp kind, const Tensor& x, const Reduction& plan) {
  MGL_CHECK(kind != cuda::ReduceOp::max || plan.count > 0, op, ": cannot take the maximum of zero elements of ",
            x.describe());
  // View x as [kept dims..., reduced dims...]: each output is one "row" of the reduced dims.
  Shape order_shape, order_strides, kept_sizes, reduced_sizes;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t d = 0; d < x.dim(); ++d)
      if (plan.reduced[d] == (pass == 1)) {
        order_shape.push_back(x.size(d));
        order_strides.push_back(x.stride(d));
        (pass == 0 ? kept_sizes : reduced_sizes).push_back(x.size(d));
      }
  const int64_t rows = numel(kept_sizes), cols = plan.count;
  Tensor out = Tensor::empty(plan.out_shape, x.dtype(), x.device());
  const Tensor ordered = x.as_strided(order_shape, order_strides, x.offset());

  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      const T* in = static_cast<const T*>(x.raw_data());
      T* po = out.data<T>();
      // f64 accumulators for every dtype: this loop is the oracle the CUDA kernel is tested against.
      const bool is_max = kind == cuda::ReduceOp::max;
      std::vector<double> acc(rows, is_max ? -INFINITY : 0.0);
      int64_t i = 0;
      for_each_offset<1>(order_shape, {order_strides}, [&](const auto& o) {
        const double v = static_cast<double>(in[o[0]]);
        double& a = acc[i++ / cols];  // the loop runs only when cols > 0
        a = is_max ? ((std::isnan(a) || a > v) ? a : v) : a + v;
      });
      for (int64_t r = 0; r < rows; ++r)
        po[r] = static_cast<T>(kind == cuda::ReduceOp::mean ? acc[r] / static_cast<double>(cols) : acc[r]);
    });
    return out;
  }
  DeviceGuard guard(x.device());
  // The [rows, cols] kernel on `in`, a contiguous buffer of the [kept..., reduced...] view.
  const auto reduce_rows = [&](const Tensor& in) {
    cuda::ReduceRowsArgs args;
    args.op = kind;
    args.rows = rows;
    args.cols = cols;
    args.dtype = x.dtype();
    args.in = in.raw_data();
    args.out = out.raw_data();
    MGL_ON_CUDA(cuda::reduce_rows(args, compute_stream(x.device())));
  };
  // In place when memory already has the shape of a kernel: the reduced dims innermost (rows) or
  // one run of leading / middle dims (columns). Otherwise gather the [kept..., reduced...] view
  // into contiguous rows first.
  if (ordered.is_contiguous()) {
    reduce_rows(ordered);
  } else if (const std::optional<Slabs> slabs = as_slabs(x, plan)) {
    cuda::ReduceColumnsArgs args;
    args.op = kind;
    args.outer = slabs->outer;
    args.reduced = slabs->reduced;
    args.inner = slabs->inner;
    args.dtype = x.dtype();
    args.in = x.raw_data();
    args.out = out.raw_data();
    int64_t bytes = 0;
    MGL_ON_CUDA(bytes = cuda::reduce_columns_workspace_bytes(args));
    // The slices' partial results are doubles: the workspace is bytes / 8 of them.
    const Tensor workspace = bytes > 0 ? Tensor::empty({bytes / 8}, DType::f64, x.device()) : Tensor();
    args.workspace = bytes > 0 ? workspace.raw_data() : nullptr;
    MGL_ON_CUDA(cuda::reduce_columns(args, compute_stream(x.device())));
  } else {
    Tensor packed = Tensor::empty(order_shape, x.dtype(), x.device());
    copy_(packed, ordered);
    reduce_rows(packed);
  }
  return out;
}

Tensor expand_reduced(const Tensor& grad, const Reduction& plan, const Shape& input_shape) {
  return expand(reshape(grad, plan.kept_shape), input_shape);
}

}  // namespace mgl::detail

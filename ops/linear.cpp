// linear: y = x @ W^T + b for x [..., in], W [out, in], b [out] (optional) -> y [..., out].
// Backward, with the leading dims of x and dy flattened into rows (X [N, in], dY [N, out]):
//   dX = dY @ W,   dW = dY^T @ X,   db = sum over rows of dY.
//
// One node: the forward is a single GEMM that reads W through a transposed view (no W^T is
// materialised); the backward's transposes are views too. The bias rides on the GEMMs where cuBLASLt's
// epilogues can take it (CUDA, f32 and bf16; cuda/gemm_bias.h): the forward's adds b to every row of the
// product as it stores it, and the dW GEMM, which reads every element of dY as op(A) = dY^T, also writes its
// row sums, db_i = Σ_r dY[r, i]. Elsewhere (the CPU, f64, or where cuBLASLt declines) the bias is broadcast
// into y and the GEMM accumulates onto it, and db is a separate column sum of dY.
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/detail/gemm.h"
#include "ops/ops.h"

namespace mgl {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_compatible("linear", x, weight);
  MGL_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got ", weight.describe());
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  MGL_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "linear: input ", x.describe(), " does not end in ",
            in_features, " features as weight ", weight.describe(), " expects");
  if (bias.defined()) {
    detail::check_compatible("linear", x, bias);
    MGL_CHECK(bias.shape() == Shape{out_features}, "linear: bias ", bias.describe(), " does not match weight ",
              weight.describe(), " (expected [", out_features, "])");
  }

  // Leading dims flattened into rows: a view when x is contiguous, a copy otherwise.
  const Shape lead(x.shape().begin(), x.shape().end() - 1);
  Tensor rows;
  {
    NoGradGuard no_grad;  // internal reshaping: the node recorded below covers it
    rows = reshape(x, {numel(lead), in_features});
  }
  const Tensor y_rows = detail::matmul_forward("linear", rows, detail::transposed_view(weight), bias);
  Shape out_shape = lead;
  out_shape.push_back(out_features);
  Tensor y = y_rows.as_strided(out_shape, contiguous_strides(out_shape), y_rows.offset());

  autograd::record("linear", {x, weight, bias}, {y},
                   [rows = rows.detach(), weight = weight.detach(), x_shape = x.shape(), need_x = x.requires_grad(),
                    need_w = weight.requires_grad(),
                    need_b = bias.defined() && bias.requires_grad()](const std::vector<Tensor>& g) {
                     const Tensor dy = reshape(g[0], {rows.size(0), weight.size(0)});
                     Tensor dx, dw, db;
                     if (need_x) dx = reshape(matmul(dy, weight), x_shape);
                     if (need_w) {
                       detail::ProductAndRowSums dw_db =
                           detail::matmul_with_row_sums("linear", detail::transposed_view(dy), rows, need_b);
                       dw = dw_db.product;
                       db = dw_db.row_sums;  // undefined unless the dW GEMM's epilogue summed dY
                     }
                     if (need_b && !db.defined()) db = sum(dy, {0});
                     return std::vector<Tensor>{dx, dw, db};
                   });
  return y;
}

}  // namespace mgl

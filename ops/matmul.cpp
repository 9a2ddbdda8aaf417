// matmul: out[..., i, j] = sum_p a[..., i, p] b[..., p, j] for a [..., m, k], b [..., k, n], the
// batch dims broadcast (b may be 2-D and shared by a batch of a, or the other way round).
// Backward: da = dy @ b^T, db = a^T @ dy, each summed over the batch dims its operand was
// broadcast along.
//
// Transposed views (transpose(x, -1, -2)) are read in place by the GEMM; the backward's b^T and a^T
// are such views too.
#include "autograd/node.h"
#include "ops/detail/gemm.h"
#include "ops/ops.h"

namespace mgl {

namespace {

int64_t batch_count(const Tensor& t) { return numel(Shape(t.shape().begin(), t.shape().end() - 2)); }

// db = a^T @ dy summed to b's shape. When b is one matrix shared by a batch of a, the batch sum is
// itself a product: stacking the batch along the rows, db = a_stacked^T @ dy_stacked with
// a_stacked [batch * m, k] and dy_stacked [batch * m, n], one GEMM and no [batch, k, n] temporary.
// (b's batch being 1, the output's batch dims are a's, so both stack in the same order.)
Tensor grad_of_b(const Tensor& a, const Tensor& b, const Tensor& dy) {
  const int64_t rows = batch_count(dy) * dy.size(-2);
  if (batch_count(dy) > 1 && batch_count(b) == 1) {
    const Tensor a_stacked = reshape(a, {rows, a.size(-1)}), dy_stacked = reshape(dy, {rows, dy.size(-1)});
    return reshape(matmul(transpose(a_stacked, 0, 1), dy_stacked), b.shape());
  }
  return sum_to_shape(matmul(transpose(a, -1, -2), dy), b.shape());
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::matmul_forward("matmul", a, b);
  autograd::record("matmul", {a, b}, {out},
                   [a = a.detach(), b = b.detach(), need_a = a.requires_grad(),
                    need_b = b.requires_grad()](const std::vector<Tensor>& g) {
                     const Tensor& dy = g[0];
                     Tensor da, db;
                     if (need_a) da = sum_to_shape(matmul(dy, transpose(b, -1, -2)), a.shape());
                     if (need_b) db = grad_of_b(a, b, dy);
                     return std::vector<Tensor>{da, db};
                   });
  return out;
}

}  // namespace mgl

#include "ops/detail/gemm.h"

#include <algorithm>
#include <optional>
#include <string>

#include "core/cuda_context.h"
#include "cuda/matmul.h"
#include "ops/detail/cpu_gemm.h"
#include "ops/detail/elementwise.h"

namespace mgl::detail {

namespace {

// How the GEMM can read a view of shape [batch..., rows, cols] with these strides, if one leading
// dimension and one batch stride describe it (the caller fills in the data pointer).
std::optional<cuda::GemmOperand> describe(const Shape& shape, const Shape& strides) {
  const size_t r = shape.size() - 2;
  const int64_t rows = shape[r], cols = shape[r + 1], row_stride = strides[r], col_stride = strides[r + 1];
  cuda::GemmOperand op;
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= cols)) {
    op.ld = rows == 1 ? cols : row_stride;  // row-major as it stands
  } else if ((rows == 1 || row_stride == 1) && (cols == 1 || col_stride >= rows)) {
    op.transposed = true;  // column-major: the row-major storage of its transpose
    op.ld = cols == 1 ? rows : col_stride;
  } else {
    return std::nullopt;  // e.g. a broadcast row (stride 0) or a slice with a step in both dims
  }
  op.ld = std::max<int64_t>(op.ld, 1);
  // The batch dims (size-1 dims aside) must step through memory like one flat dim: each outer dim's
  // stride is the inner stride times the number of matrices inside it. Stride 0 throughout (a
  // matrix shared by the whole batch) qualifies.
  bool seen = false;
  int64_t inner = 1;  // matrices covered by the dims inside d
  for (size_t d = r; d-- > 0;) {
    if (shape[d] == 1) continue;
    if (!seen) op.batch_stride = strides[d];
    else if (strides[d] != op.batch_stride * inner) return std::nullopt;
    seen = true;
    inner *= shape[d];
  }
  return op;
}

// A GEMM operand and the tensor whose memory it reads: the input itself, or a packed copy. The
// copy may be freed as soon as the GEMM is enqueued: the allocator's stream ordering keeps its
// memory valid until the GEMM has run.
struct Operand {
  Tensor memory;
  cuda::GemmOperand gemm;
};

// t read as [batch..., rows, cols], its batch dims broadcast. Copies only when its layout cannot be
// described: first into t's own shape, and if the broadcast batch still does not flatten (t [2, 1,
// m, k] against batch [2, 3]), into the full broadcast shape.
Operand operand(const Tensor& t, const Shape& batch) {
  Shape shape = batch;
  shape.push_back(t.size(-2));
  shape.push_back(t.size(-1));
  auto view = [&](const Tensor& m) -> std::optional<Operand> {
    std::optional<cuda::GemmOperand> op = describe(shape, broadcast_strides(m.shape(), m.strides(), shape));
    if (!op) return std::nullopt;
    op->data = m.raw_data();
    return Operand{m, *op};
  };
  if (std::optional<Operand> direct = view(t)) return *direct;
  if (!t.is_contiguous()) {
    Tensor packed = Tensor::empty(t.shape(), t.dtype(), t.device());
    copy_(packed, t);
    if (std::optional<Operand> packed_view = view(packed)) return *packed_view;
  }
  Tensor full = Tensor::empty(shape, t.dtype(), t.device());
  copy_(full, t.as_strided(shape, broadcast_strides(t.shape(), t.strides(), shape), t.offset()));
  return *view(full);  // contiguous: always describable
}

}  // namespace

Tensor matmul_forward(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias) {
  check_compatible(op, a, b);
  MGL_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": expected matrices (rank >= 2), got ", a.describe(), " and ",
            b.describe());
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  MGL_CHECK(b.size(-2) == k, op, ": inner dims differ: ", a.describe(), " @ ", b.describe(), " (", k, " vs ",
            b.size(-2), ")");
  const std::string batch_label = std::string(op) + ": batch dims of " + a.describe() + " and " + b.describe();
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2), batch_label.c_str());
  if (bias.defined()) {
    check_compatible(op, a, bias);
    MGL_CHECK(bias.shape() == Shape{n}, op, ": bias ", bias.describe(), " should have shape [", n, "]");
  }
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  // The bias is broadcast into C first and the GEMM accumulates onto it (beta = 1), so no add
  // kernel has to read the product back. (A cuBLASLt bias epilogue would also save this write.)
  if (bias.defined())
    copy_(out, bias.as_strided(out_shape, broadcast_strides(bias.shape(), bias.strides(), out_shape), bias.offset()));
  else if (k == 0)
    fill_(out, 0.0);  // a sum over nothing
  if (out.numel() == 0 || k == 0) return out;

  const Operand pa = operand(a, batch), pb = operand(b, batch);
  cuda::Gemm g;
  g.dtype = a.dtype();
  g.batch = numel(batch);
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = pa.gemm;
  g.b = pb.gemm;
  g.c = out.raw_data();
  g.ldc = n;
  g.c_batch_stride = m * n;
  g.accumulate = bias.defined();
  // A batch of products with one shared B is a single tall product when the A matrices follow each
  // other m rows apart (as the C matrices do): [batch * m, k] @ [k, n], one large GEMM instead of
  // many small ones.
  if (g.batch > 1 && g.b.batch_stride == 0 && !g.a.transposed && g.a.batch_stride == m * g.a.ld) {
    g.m *= g.batch;
    g.batch = 1;
    g.a.batch_stride = 0;
    g.c_batch_stride = 0;
  }

  run_gemm(g, out.device());
  return out;
}

void run_gemm(const cuda::Gemm& problem, const Device& device) {
  if (device.is_cpu()) {
    cpu_gemm(problem);
  } else {
    DeviceGuard guard(device);
    MGL_ON_CUDA(cuda::gemm(problem, device.index, compute_stream(device)));
  }
}

Tensor transposed_view(const Tensor& t) {
  MGL_CHECK(t.dim() >= 2, "transposed_view: expected rank >= 2, got ", t.describe());
  Shape shape = t.shape(), strides = t.strides();
  std::swap(shape[shape.size() - 2], shape[shape.size() - 1]);
  std::swap(strides[strides.size() - 2], strides[strides.size() - 1]);
  return t.as_strided(shape, strides, t.offset());
}

}  // namespace mgl::detail

#include "ops/detail/gemm.h"

#include <algorithm>
#include <optional>
#include <string>

#include "core/cuda_context.h"
#include "cuda/gemm_bias.h"
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

// bias [n] read as a tensor of `shape` [..., n] (a broadcast view, stride 0 outside the last dim).
Tensor broadcast_bias(const Tensor& bias, const Shape& shape) {
  return bias.as_strided(shape, broadcast_strides(bias.shape(), bias.strides(), shape), bias.offset());
}

// A GEMM ready to run: its output (allocated, or filled already when there is nothing to multiply) and its
// description, whose operands' memory it keeps alive.
struct Prepared {
  Tensor out;
  Operand a, b;
  cuda::Gemm gemm;
  bool done = false;  // an empty output or k = 0: out holds the result already (zeros, or the bias)
};

// out = a @ b (+ bias on every row: put there here only when there is no product to add it to).
Prepared prepare(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias) {
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
  Prepared p;
  p.out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (p.out.numel() == 0 || k == 0) {
    if (bias.defined()) copy_(p.out, broadcast_bias(bias, out_shape));
    else if (k == 0) fill_(p.out, 0.0);  // a sum over nothing
    p.done = true;
    return p;
  }

  p.a = operand(a, batch);
  p.b = operand(b, batch);
  cuda::Gemm& g = p.gemm;
  g.dtype = a.dtype();
  g.batch = numel(batch);
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = p.a.gemm;
  g.b = p.b.gemm;
  g.c = p.out.raw_data();
  g.ldc = n;
  g.c_batch_stride = m * n;
  // A batch of products with one shared B is a single tall product when the A matrices follow each other m rows
  // apart (as the C matrices do): [batch * m, k] @ [k, n], one large GEMM instead of many small ones.
  if (g.batch > 1 && g.b.batch_stride == 0 && !g.a.transposed && g.a.batch_stride == m * g.a.ld) {
    g.m *= g.batch;
    g.batch = 1;
    g.a.batch_stride = 0;
    g.c_batch_stride = 0;
  }
  return p;
}

// A vector's data for a cuBLASLt epilogue, which wants it packed: null when it is not (a strided view).
void* packed_vector(const Tensor& v) { return v.numel() <= 1 || v.stride(0) == 1 ? v.raw_data() : nullptr; }

// run_gemm with the bias added by cuBLASLt's epilogue (cuda/gemm_bias.h). False, with nothing run, on the CPU
// or where cuBLASLt declines: the caller runs the fallback.
bool run_gemm_bias(const cuda::Gemm& problem, const Tensor& bias, const Device& device) {
  if (device.is_cpu() || !packed_vector(bias)) return false;
  DeviceGuard guard(device);
  bool ran = false;
  MGL_ON_CUDA(ran = cuda::gemm_bias(problem, packed_vector(bias), device.index, compute_stream(device)));
  return ran;
}

// run_gemm with op(A)'s row sums ([m], `dtype`) written by cuBLASLt's epilogue: the sums, or undefined, with
// nothing run, on the CPU or where cuBLASLt declines (the caller runs the fallback).
Tensor run_gemm_bias_grad(const cuda::Gemm& problem, DType dtype, const Device& device) {
  if (device.is_cpu()) return Tensor();
  DeviceGuard guard(device);
  const Tensor sums = Tensor::empty({problem.m}, dtype, device);
  bool ran = false;
  MGL_ON_CUDA(ran = cuda::gemm_bias_grad(problem, sums.raw_data(), device.index, compute_stream(device)));
  return ran ? sums : Tensor();
}

}  // namespace

Tensor matmul_forward(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias) {
  Prepared p = prepare(op, a, b, bias);
  if (p.done) return p.out;
  if (!bias.defined()) {
    run_gemm(p.gemm, p.out.device());
  } else if (!run_gemm_bias(p.gemm, bias, p.out.device())) {
    // No epilogue: the bias broadcast into C first and the GEMM accumulating onto it (beta = 1), so no add
    // kernel has to read the product back.
    copy_(p.out, broadcast_bias(bias, p.out.shape()));
    p.gemm.accumulate = true;
    run_gemm(p.gemm, p.out.device());
  }
  return p.out;
}

ProductAndRowSums matmul_with_row_sums(const char* op, const Tensor& a, const Tensor& b, bool want_row_sums) {
  MGL_CHECK(a.dim() == 2 && b.dim() == 2, op, ": expected two matrices, got ", a.describe(), " and ", b.describe());
  Prepared p = prepare(op, a, b, Tensor());
  ProductAndRowSums result{p.out, Tensor()};
  if (p.done) return result;
  if (want_row_sums) result.row_sums = run_gemm_bias_grad(p.gemm, a.dtype(), a.device());
  if (!result.row_sums.defined()) run_gemm(p.gemm, p.out.device());
  return result;
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

// linear_cross_entropy(x [N, D], weight [V, D], bias [V] or undefined, targets [N]): the loss of
// cross_entropy(linear(x, weight, bias), targets) without ever holding the [N, V] logits. With
// z = x W^T + b and lse_r = log sum_v exp(z[r, v]), the mean over the n rows whose target is not ignore_index
//   loss = (1/n) sum_{r counted} (lse_r - z[r, t_r]).
// Backward, with dz[r, v] = (softmax(z_r)_v - [v == t_r]) / n (0 on ignored rows) and dloss the incoming scalar:
//   dx = dloss · dz W,   dW = dloss · dz^T x,   db = dloss · sum_r dz[r, :].
//
// The rows go through in chunks of C (as Liger-Kernel's fused linear cross-entropy does). Per chunk:
//   1. z_c = x_c W^T (+ b) in the loss type, f32 (f64 for f64): a GEMM with f32 output for bf16 x and W,
//      so the logits and the loss are f32 whatever the compute dtype (docs/megalodon.md §2.7);
//   2. each row's lse and loss: cross_entropy's forward pass (ops/detail/cross_entropy.h);
//   and only for the inputs that require grad (none under NoGradGuard: evaluation allocates nothing for them),
//   3. dz_c in the compute dtype: cross_entropy's backward pass with dloss = 1, in place over z_c for f32 and
//      f64, into a chunk-sized bf16 buffer for bf16;
//   4. dx_c = dz_c W into dx's rows, dW += dz_c^T x_c, db += 1^T dz_c: GEMMs accumulating in f32 (f64 for
//      f64) into f32 buffers.
// So the gradient work runs in the forward, while z_c is at hand, and the node keeps only dx, dW and db in
// f32 for the backward to multiply by dloss (a device scalar: no host wait) and round once to the inputs'
// dtype. The GEMM FLOPs are the unfused pair's (x W^T, dz W, dz^T x); what goes is the [N, V] f32 logits,
// their gradient and the casts between those and the bf16 GEMMs' (docs/perf.md, "Optimisation log").
//
// Chunk size: the rows whose logits fit in kChunkBytes = 256 MiB, rounded down to a multiple of 128 (whole
// GEMM tiles) unless that is none (V > 512K in f32): 2048 rows for V = 32000 in f32, 16 chunks of the
// 32768-token step; 256 MiB keeps the scratch small next to the step's activations while each chunk's GEMMs
// (2048 x 32000 x 768: 100 GFLOP) stay large enough to run at cuBLAS's full rate. A chunk's scratch is z_c (256 MiB) and, for bf16, dz_c (128 MiB); the node keeps
// dx [N, D], dW [V, D] and db [V] in f32 (96 + 94 MiB at N 32768, D 768, V 32000). `chunk_rows` > 0 sets C
// (the tests cover several chunks with it).
//
// Targets are read and checked as cross_entropy reads them: an id outside [0, V) that is not ignore_index
// throws naming the id and its row, CPU targets cost a CUDA step no wait, and all rows ignored give a loss
// of 0 and zero gradients. The CPU runs the same chunks through the CPU GEMM and cross_entropy's f64
// reference passes: exactly the math of the unfused pair, up to the GEMMs' summation order.
#include <algorithm>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/detail/cross_entropy.h"
#include "ops/detail/elementwise.h"
#include "ops/detail/gemm.h"
#include "ops/ops.h"

namespace mgl {

namespace {

constexpr int64_t kChunkBytes = int64_t{256} << 20;

int64_t default_chunk_rows(int64_t vocab, DType loss_dtype) {
  const int64_t rows = kChunkBytes / (vocab * static_cast<int64_t>(dtype_size(loss_dtype)));
  return rows >= 128 ? rows / 128 * 128 : std::max<int64_t>(rows, 1);
}

// c = op(a) op(b), or c += op(a) op(b) when accumulating, for contiguous matrices, op(m) = m^T where
// `transposed` says so. A c of another dtype than a's is f32 and takes bf16 products unrounded
// (Gemm::f32_output).
void product(const Tensor& c, const Tensor& a, bool a_transposed, const Tensor& b, bool b_transposed,
             bool accumulate) {
  auto operand = [](const Tensor& m, bool transposed) {
    return cuda::GemmOperand{m.raw_data(), std::max<int64_t>(m.size(1), 1), 0, transposed};
  };
  cuda::Gemm g;
  g.dtype = a.dtype();
  g.m = c.size(0);
  g.n = c.size(1);
  g.k = a_transposed ? a.size(0) : a.size(1);
  g.a = operand(a, a_transposed);
  g.b = operand(b, b_transposed);
  g.c = c.raw_data();
  g.ldc = std::max<int64_t>(c.size(1), 1);
  g.accumulate = accumulate;
  g.f32_output = c.dtype() != a.dtype();
  detail::run_gemm(g, c.device());
}

}  // namespace

Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t ignore_index, int64_t chunk_rows) {
  const char* op = "linear_cross_entropy";
  detail::check_compatible(op, x, weight);
  MGL_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), op,
            ": expected x [N, D] and weight [V, D], got ", x.describe(), " and ", weight.describe());
  const int64_t rows = x.size(0), features = x.size(1), vocab = weight.size(0);
  MGL_CHECK(vocab > 0 && features > 0, op, ": weight ", weight.describe(), " has no classes or no features");
  if (bias.defined()) {
    detail::check_compatible(op, x, bias);
    MGL_CHECK(bias.shape() == Shape{vocab}, op, ": bias ", bias.describe(), " does not match weight ",
              weight.describe(), " (expected [", vocab, "])");
  }
  MGL_CHECK(targets.defined() && is_integer(targets.dtype()), op, ": targets must be i32 or i64, got ",
            targets.defined() ? targets.describe() : "an undefined tensor");
  MGL_CHECK(targets.dim() == 1 && targets.size(0) == rows, op, ": targets ", targets.describe(), " do not match x ",
            x.describe(), " (expected [", rows, "])");
  MGL_CHECK(targets.device() == x.device() || targets.is_cpu(), op, ": x ", x.describe(), " and targets ",
            targets.describe(), " are on different devices (targets may also be on the CPU)");
  MGL_CHECK(chunk_rows >= 0, op, ": chunk_rows must be >= 0 (0 chooses it), got ", chunk_rows);

  const Device device = x.device();
  const detail::CheckedTargets t = detail::check_targets(op, targets, vocab, ignore_index, device);
  const double scale = t.counted > 0 ? 1.0 / static_cast<double>(t.counted) : 0.0;
  const DType dtype = x.dtype(), loss_dtype = dtype == DType::f64 ? DType::f64 : DType::f32;
  const bool need_x = grad_enabled() && x.requires_grad(), need_w = grad_enabled() && weight.requires_grad();
  const bool need_b = grad_enabled() && bias.defined() && bias.requires_grad();
  const int64_t chunk = std::min(rows, chunk_rows > 0 ? chunk_rows : default_chunk_rows(vocab, loss_dtype));

  const Tensor xs = contiguous(x.detach()), w = contiguous(weight.detach());
  const Tensor row_loss = Tensor::empty({rows}, loss_dtype, device);
  const Tensor logits = Tensor::empty({chunk, vocab}, loss_dtype, device), lse = Tensor::empty({chunk}, loss_dtype, device);
  Tensor dlogits, one, ones, dx, dw, db;
  if (need_x || need_w || need_b) {
    dlogits = dtype == loss_dtype ? logits : Tensor::empty({chunk, vocab}, dtype, device);
    one = Tensor::ones({}, loss_dtype, device);  // the dloss of step 3: the backward applies the real one
  }
  if (need_x) dx = Tensor::empty({rows, features}, loss_dtype, device);
  if (need_w) dw = Tensor::zeros({vocab, features}, loss_dtype, device);
  if (need_b) {
    db = Tensor::zeros({1, vocab}, loss_dtype, device);
    ones = Tensor::ones({1, chunk}, dtype, device);
  }

  for (int64_t start = 0; start < rows; start += chunk) {
    const int64_t n = std::min(chunk, rows - start), end = start + n;
    const Tensor x_c = slice(xs, 0, start, end), ids = slice(t.ids, 0, start, end);
    const Tensor z = slice(logits, 0, 0, n), lse_c = slice(lse, 0, 0, n);
    // The bias first, the GEMM accumulating onto it, as linear's forward does.
    if (bias.defined()) copy_(z, expand(bias.detach(), {n, vocab}));
    product(z, x_c, false, w, true, bias.defined());
    detail::cross_entropy_rows(z, ids, ignore_index, slice(row_loss, 0, start, end), lse_c);
    if (!dlogits.defined()) continue;
    const Tensor dz = slice(dlogits, 0, 0, n);
    detail::cross_entropy_row_grads(z, ids, ignore_index, lse_c, one, scale, dz);
    if (need_x) product(slice(dx, 0, start, end), dz, false, w, false, false);
    if (need_w) product(dw, dz, true, x_c, false, true);
    if (need_b) product(db, slice(ones, 1, 0, n), false, dz, false, true);
  }
  Tensor loss = mul(sum(row_loss), scale);

  autograd::record(op, {x, weight, bias}, {loss}, [dx, dw, db, dtype, loss_dtype](const std::vector<Tensor>& g) {
    // dloss stays on the device: a broadcast multiply in f32, then one rounding to the inputs' dtype.
    const Tensor dloss = cast(g[0], loss_dtype);
    auto times_dloss = [&](const Tensor& d) { return d.defined() ? cast(mul(d, dloss), dtype) : Tensor(); };
    const Tensor dbias = times_dloss(db);
    return std::vector<Tensor>{times_dloss(dx), times_dloss(dw),
                               dbias.defined() ? reshape(dbias, {dbias.size(1)}) : dbias};
  });
  return loss;
}

}  // namespace mgl

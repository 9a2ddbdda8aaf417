// vocab_parallel_cross_entropy: cross_entropy (ops/cross_entropy.cpp) of logits whose columns are split
// over the TP ranks of a group. Rank q holds x^q = x[:, q n : (q + 1) n], n = V / TP columns. For a row
// r with target t_r (counted when t_r != ignore_index; n_c rows count):
//
//   m_r   = max_q max_c x^q[r, c]                                 all-reduce (max)
//   S_r   = sum_q sum_c exp(x^q[r, c] - m_r)                      } one all-reduce (sum)
//   z_r   = x[r, t_r] - m_r on the rank owning t_r, 0 on others   } of a [2, N] buffer
//   loss  = (1/n_c) sum_{r counted} (log S_r - z_r)
//
// log S_r - z_r = lse_r - x[r, t_r] with lse_r = m_r + log S_r: the single-process loss of the row. The
// shift m_r cancels, so no gradient flows through it; it only keeps every exp in (0, 1] (nothing
// overflows), which needs the maximum over the whole row, hence the first all-reduce.
//
// Backward on rank q's slice is the single-process formula restricted to the slice,
//   dx^q[r, c] = (exp(x^q[r, c] - lse_r) - [q n + c == t_r]) * dloss / n_c,   0 on ignored rows,
// and needs no communication: every rank has lse_r after the forward.
//
// One node, built from ops (max, exp, sum, where, ...), that saves the logits (its input: no copy), lse
// and two [N] vectors: each row's target column within this slice (-1 where another rank owns the
// target or the row is ignored) and its weight (1 counted, 0 ignored). The arithmetic is in f32 for
// f32 and bf16 logits (bf16 ones are widened to an f32 copy), in f64 for f64, like cross_entropy's.
// All rows ignored (n_c = 0): the loss is 0 with a zero gradient, as in cross_entropy.
// Targets are read on the host and checked before any communication (CUDA targets are copied there, CPU
// ones cost no wait); they are the same on every rank, so a bad id throws on every rank alike and no rank
// is left waiting in a collective.
#include "dist/vocab_parallel_cross_entropy.h"

#include <vector>

#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl::dist {

namespace {

// What this rank needs to know about the targets, as [N] tensors of the compute dtype.
struct SliceTargets {
  Tensor column;        // the target's column in this slice, -1 if not in it (or ignored)
  Tensor weight;        // 1 for a counted row, 0 for an ignored one
  int64_t counted = 0;  // n_c
};

// Checks every id (in [0, vocab) or ignore_index) and finds which targets fall in this rank's columns
// [first, first + cols); the tensors are made on `device`, the logits'.
SliceTargets slice_targets(const Tensor& targets, int64_t first, int64_t cols, int64_t vocab, int64_t ignore_index,
                           DType dtype, const Device& device) {
  const std::vector<int64_t> ids = targets.to_vector<int64_t>();
  std::vector<double> column(ids.size(), -1.0), weight(ids.size(), 0.0);
  int64_t counted = 0;
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r] == ignore_index) continue;
    MGL_CHECK(ids[r] >= 0 && ids[r] < vocab, "vocab_parallel_cross_entropy: target id ", ids[r], " at row ", r,
              " is outside [0, ", vocab, ") (", cols, " columns on each of ", vocab / cols,
              " ranks) and is not ignore_index (", ignore_index, ")");
    if (ids[r] >= first && ids[r] < first + cols) column[r] = static_cast<double>(ids[r] - first);
    weight[r] = 1.0;
    ++counted;
  }
  const Shape shape{static_cast<int64_t>(ids.size())};
  return {Tensor::from_vector(column, shape, dtype, device), Tensor::from_vector(weight, shape, dtype, device),
          counted};
}

// [N, cols], zero exactly at each row's target column and non-zero elsewhere (a row whose column is -1
// has no zero): c - column_r, exact while cols <= 2^24, where f32 still holds every integer.
Tensor off_target(const Tensor& column, int64_t cols) {
  return sub(arange(cols, column.dtype(), column.device()), unsqueeze(column, 1));
}

}  // namespace

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, const ProcessGroup& group,
                                    int64_t ignore_index) {
  MGL_CHECK(logits.defined() && is_floating(logits.dtype()) && logits.dim() == 2,
            "vocab_parallel_cross_entropy: logits must be a floating [N, V/TP] tensor, got ",
            logits.defined() ? logits.describe() : "undefined");
  MGL_CHECK(targets.defined() && is_integer(targets.dtype()),
            "vocab_parallel_cross_entropy: targets must be i32 or i64, got ",
            targets.defined() ? targets.describe() : "undefined");
  const int64_t rows = logits.size(0), cols = logits.size(1);
  MGL_CHECK(targets.dim() == 1 && targets.size(0) == rows, "vocab_parallel_cross_entropy: targets ",
            targets.describe(), " do not match logits ", logits.describe(), " (expected [", rows, "])");
  MGL_CHECK(targets.device() == logits.device() || targets.is_cpu(), "vocab_parallel_cross_entropy: logits ",
            logits.describe(), " and targets ", targets.describe(),
            " are on different devices (targets may also be on the CPU)");
  MGL_CHECK(cols > 0 && cols <= (int64_t{1} << 24), "vocab_parallel_cross_entropy: logits ", logits.describe(),
            " must have between 1 and 2^24 columns on each rank (columns are compared as f32 values)");

  const DType dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const SliceTargets t =
      slice_targets(targets, group.rank() * cols, cols, cols * group.size(), ignore_index, dtype, logits.device());
  const double scale = t.counted > 0 ? 1.0 / static_cast<double>(t.counted) : 0.0;
  Communicator& comm = group.on(logits.device());

  const Tensor x = cast(logits.detach(), dtype);
  Tensor shift = max(x, {1});
  comm.all_reduce(shift, ReduceOp::max)->wait();
  const Tensor shifted = sub(x, unsqueeze(shift, 1));
  // Row 0: the sums of exp over this slice; row 1: the target's shifted logit where this rank owns it.
  Tensor sums = stack({sum(exp(shifted), {1}), sum(masked_fill(shifted, off_target(t.column, cols), 0.0), {1})}, 0);
  comm.all_reduce(sums, ReduceOp::sum)->wait();
  const Tensor log_total = log(squeeze(slice(sums, 0, 0, 1), 0));
  const Tensor target = squeeze(slice(sums, 0, 1, 2), 0);
  Tensor loss = mul(sum(mul(sub(log_total, target), t.weight)), scale);
  const Tensor lse = add(shift, log_total);

  autograd::record("vocab_parallel_cross_entropy", {logits}, {loss},
                   [logits = logits.detach(), lse, column = t.column, weight = t.weight, scale,
                    dtype](const std::vector<Tensor>& g) {
                     const Tensor probability = exp(sub(cast(logits, dtype), unsqueeze(lse, 1)));
                     const Tensor softmax_minus_one_hot =
                         where(off_target(column, logits.size(1)), probability, add(probability, -1.0));
                     const Tensor row_scale = mul(weight, mul(cast(g[0], dtype), scale));  // dloss / n_c or 0
                     const Tensor dx = mul(softmax_minus_one_hot, unsqueeze(row_scale, 1));
                     return std::vector<Tensor>{cast(dx, logits.dtype())};
                   });
  return loss;
}

}  // namespace mgl::dist

#pragma once
// The checks dist::vocab_parallel_cross_entropy passes on every device (run under mpirun by
// test_vocab_parallel_cross_entropy_mpi.cpp on CPU tensors and ..._mpi_cuda.cpp on CUDA tensors): each
// rank of a tensor group holds its slice of the columns of one set of logits that every rank can draw
// (the seed is shared), and the loss and each rank's gradient are compared with the single-process
// cross_entropy of the whole logits and the matching slice of its gradient.
#include <memory>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "dist/vocab_parallel_cross_entropy.h"

namespace mgl::testing {

// The grid data x 1 x tensor over every process of the job, on `device` ("cpu" or "cuda").
inline std::shared_ptr<dist::ParallelState> tensor_grid(int64_t data, const std::string& device) {
  dist::ParallelOptions o;
  o.sizes = {data, 1, dist::initialize_mpi().size / data};
  o.timeout_s = 120;
  return dist::ParallelState::create(o, device);
}

// `rows` (>= ranks + 2) targets over the vocabulary of cols * ranks ids: row q < ranks falls in rank q's
// slice, the last two rows are ignore_index (-100), the others are drawn from the whole vocabulary.
inline Tensor spread_targets(int64_t rows, int64_t cols, int ranks, uint64_t seed, DType dtype = DType::i64) {
  std::vector<int64_t> ids = random_ids({rows}, cols * ranks, seed).to_vector<int64_t>();
  for (int q = 0; q < ranks; ++q) ids[q] = q * cols + ids[q] % cols;
  ids[rows - 1] = ids[rows - 2] = -100;
  return Tensor::from_vector(ids, {rows}, dtype);
}

// A new leaf holding x's values in `dtype` on `device`.
inline Tensor leaf_copy(const Tensor& x, DType dtype, const Device& device) {
  Tensor y = Tensor::empty(x.shape(), dtype, device);
  copy_(y, x);
  return y.set_requires_grad(true);
}

// The logits `full` [N, V] are rounded to `dtype` first, so only the computation differs: this rank's
// slice of them, on `device`, through vocab_parallel_cross_entropy, against cross_entropy of all of
// them in `reference` on the CPU. Both losses are scaled by 0.75 before backward (dloss != 1).
inline void check_against_single_process(const dist::ProcessGroup& group, const Tensor& full, const Tensor& targets,
                                         DType dtype, DType reference, const Device& device, double tolerance) {
  const int r = group.rank();
  const int64_t cols = full.size(1) / group.size();
  INFO(group.name() << " group, rank " << r << " of " << group.size() << ", " << dtype_name(dtype) << " logits on "
                    << device.str() << " against " << dtype_name(reference) << ", targets "
                    << dtype_name(targets.dtype()));
  const Tensor rounded = cast(full, dtype);
  const Tensor whole = leaf_copy(rounded, reference, Device::cpu());
  const Tensor expected = mul(cross_entropy(whole, targets), 0.75);
  backward(expected);

  const Tensor mine = leaf_copy(slice(rounded, 1, r * cols, (r + 1) * cols), dtype, device);
  const Tensor loss = mul(dist::vocab_parallel_cross_entropy(mine, to(targets, device), group), 0.75);
  backward(loss);
  CHECK(loss.dtype() == expected.dtype());
  CHECK(loss.dim() == 0);
  CHECK(relative_error(loss, expected) <= tolerance);
  CHECK(relative_error(mine.grad(), slice(whole.grad(), 1, r * cols, (r + 1) * cols)) <= tolerance);
}

// Every row ignored: the loss is 0 and the gradient is zero on every rank.
inline void check_all_ignored(const dist::ProcessGroup& group, DType dtype, const Device& device, uint64_t seed) {
  INFO(dtype_name(dtype) << " logits on " << device.str());
  const Tensor logits = leaf_copy(random_tensor({4, 3}, seed + static_cast<uint64_t>(group.rank())), dtype, device);
  const Tensor loss = dist::vocab_parallel_cross_entropy(logits, Tensor::full({4}, -100, DType::i64, device), group);
  backward(loss);
  CHECK(loss.item() == 0.0);
  for (double g : logits.grad().to_vector<double>()) CHECK(g == 0.0);
}

// The logits' dtype, the single-process cross_entropy's, and the largest relative error allowed.
struct Precision {
  DType dtype, reference;
  double tolerance;
};

// The logits of `group` (group.size() + extra_rows rows of `cols` columns per rank, uniform in
// [-range, range)) and their targets (spread_targets) drawn from `seed`, checked in every precision,
// with i64 and with i32 targets.
inline void check_group(const dist::ProcessGroup& group, const Device& device, uint64_t seed, int64_t extra_rows,
                        int64_t cols, double range, const std::vector<Precision>& precisions) {
  const int64_t rows = group.size() + extra_rows;
  const Tensor full = random_tensor({rows, cols * group.size()}, seed, DType::f64, -range, range);
  for (const Precision& p : precisions)
    for (DType ids : {DType::i64, DType::i32})
      check_against_single_process(group, full, spread_targets(rows, cols, group.size(), seed + 1, ids), p.dtype,
                                   p.reference, device, p.tolerance);
}

// Everything on `device` ("cpu" or "cuda"), from a seed shared by every rank: the world as one tensor
// group; with an even number of ranks, two tensor groups side by side, each with logits of its own; and
// every row ignored, in each precision's dtype.
inline void run_vocab_parallel_suite(const std::string& device, int64_t extra_rows, int64_t cols, double range,
                                     const std::vector<Precision>& precisions) {
  const auto ps = tensor_grid(1, device);
  const uint64_t seed = shared_seed(ps->world());
  INFO("seed " << seed);
  check_group(ps->tensor(), ps->device(), seed, extra_rows, cols, range, precisions);
  if (ps->world_size() % 2 == 0) {
    const auto split = tensor_grid(2, device);
    const uint64_t own = seed + 10 * static_cast<uint64_t>(split->coordinates().data + 1);
    check_group(split->tensor(), split->device(), own, extra_rows, cols, range, precisions);
  }
  for (const Precision& p : precisions) check_all_ignored(ps->tensor(), p.dtype, ps->device(), seed);
}

}  // namespace mgl::testing

// linear_cross_entropy on CUDA against the CPU reference (f64), forward and backward of x, weight and bias: f32
// (1e-5) and bf16 (1e-2) with i32 and i64 targets, ignored rows, several chunks whose last one is partial, a
// 32000-class vocabulary; against the unfused pair in f32; CPU targets without a host wait; all rows ignored;
// bad ids; and the memory it holds: one chunk of logits, no gradient buffers under NoGradGuard.
#include <tuple>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

Tensor targets_with_ignored(int64_t n, int64_t vocab, uint64_t seed, DType dtype = DType::i64) {
  std::vector<int64_t> ids = random_ids({n}, vocab, seed).to_vector<int64_t>();
  ids[1] = ids[n - 1] = -100;
  return Tensor::from_vector(ids, {n}, dtype);
}

void check_matches_cpu(int64_t rows, int64_t features, int64_t vocab, bool with_bias, int64_t chunk_rows,
                       DType target_dtype) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor x = random_tensor({rows, features}, seed, DType::f32, -2, 2).set_requires_grad(true);
    Tensor w = random_tensor({vocab, features}, seed + 1, DType::f32).set_requires_grad(true);
    Tensor b = with_bias ? random_tensor({vocab}, seed + 2, DType::f32).set_requires_grad(true) : Tensor();
    const Tensor targets = targets_with_ignored(rows, vocab, seed + 3, target_dtype);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [&](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{linear_cross_entropy(in[0], in[1], in[2], in[3], -100, chunk_rows)};
        },
        {x, w, b, targets}, dtype, &report);
    INFO(dtype_name(dtype) << " [" << rows << ", " << features << "] x [" << vocab << ", " << features << "]"
                           << (with_bias ? " with bias" : "") << ", chunk_rows " << chunk_rows << ", "
                           << dtype_name(target_dtype) << " targets, seed " << seed << "\n"
                           << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

}  // namespace

TEST_CASE("linear_cross_entropy: CUDA matches CPU in f32 and bf16, over several chunks", "[cuda][linear_cross_entropy]") {
  for (DType target_dtype : {DType::i64, DType::i32}) {
    for (bool with_bias : {true, false}) {
      check_matches_cpu(300, 96, 1000, with_bias, 64, target_dtype);  // 4 chunks of 64 and one of 44
      check_matches_cpu(37, 65, 129, with_bias, 0, target_dtype);     // one chunk, odd sizes
    }
  }
  check_matches_cpu(200, 64, 32000, false, 0, DType::i64);    // the 125M model's vocabulary, one chunk
  check_matches_cpu(200, 64, 32000, true, 48, DType::i64);    // ... in chunks of 48
}

TEST_CASE("linear_cross_entropy: CUDA equals cross_entropy of linear in f32", "[cuda][linear_cross_entropy]") {
  // The same GEMMs over other row blocks and the same cross-entropy kernels: summation order only.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Device gpu = Device::cuda(0);
  const Tensor x = random_tensor({500, 128}, seed, DType::f32, -2, 2, gpu);
  const Tensor w = random_tensor({3000, 128}, seed + 1, DType::f32, -1, 1, gpu);
  const Tensor targets = targets_with_ignored(500, 3000, seed + 2);
  auto run = [&](bool fused) {
    Tensor xl = x.detach().set_requires_grad(true), wl = w.detach().set_requires_grad(true);
    const Tensor loss = fused ? linear_cross_entropy(xl, wl, Tensor(), targets, -100, 128)
                              : cross_entropy(linear(xl, wl), targets);
    backward(loss, Tensor::scalar(0.3, DType::f32, gpu));
    return std::make_tuple(loss.item(), xl.grad(), wl.grad());
  };
  const auto [loss, dx, dw] = run(true);
  const auto [want_loss, want_dx, want_dw] = run(false);
  CHECK(std::abs(loss - want_loss) <= 1e-5 * std::abs(want_loss));
  CHECK(relative_error(dx, want_dx) <= 1e-5);
  CHECK(relative_error(dw, want_dw) <= 1e-5);
}

TEST_CASE("linear_cross_entropy: CPU targets with CUDA inputs give the same bits, without a host synchronisation",
          "[cuda][linear_cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Device gpu = Device::cuda(0);
  const Tensor targets = targets_with_ignored(300, 700, seed);
  const Tensor x = random_tensor({300, 32}, seed + 1, DType::bf16, -2, 2, gpu);
  const Tensor w = random_tensor({700, 32}, seed + 2, DType::bf16, -1, 1, gpu);
  auto run = [&](const Tensor& these_targets) {
    Tensor xl = x.detach().set_requires_grad(true), wl = w.detach().set_requires_grad(true);
    const int64_t before = host_synchronizations();
    const Tensor loss = linear_cross_entropy(xl, wl, Tensor(), these_targets, -100, 128);
    backward(loss);
    const int64_t waits = host_synchronizations() - before;
    return std::make_tuple(loss.item(), xl.grad().to_vector<float>(), wl.grad().to_vector<float>(), waits);
  };
  const auto [loss_host, dx_host, dw_host, waits_host] = run(targets);
  const auto [loss_device, dx_device, dw_device, waits_device] = run(to(targets, gpu));
  CHECK(waits_host == 0);
  CHECK(waits_device == 1);  // the targets' copy to the host
  CHECK(loss_host == loss_device);
  CHECK(dx_host == dx_device);
  CHECK(dw_host == dw_device);
}

TEST_CASE("linear_cross_entropy: CUDA, all rows ignored gives 0 and zero gradients", "[cuda][linear_cross_entropy]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Device gpu = Device::cuda(0);
    Tensor x = random_tensor({4, 16}, seed, dtype, -2, 2, gpu).set_requires_grad(true);
    Tensor w = random_tensor({100, 16}, seed + 1, dtype, -1, 1, gpu).set_requires_grad(true);
    Tensor b = random_tensor({100}, seed + 2, dtype, -1, 1, gpu).set_requires_grad(true);
    const Tensor loss = linear_cross_entropy(x, w, b, Tensor::full({4}, -100.0, DType::i64), -100, 3);
    CHECK(loss.dtype() == DType::f32);
    CHECK(loss.item() == 0.0);
    backward(loss);
    CHECK(x.grad().to_vector<double>() == std::vector<double>(64, 0.0));
    CHECK(w.grad().to_vector<double>() == std::vector<double>(1600, 0.0));
    CHECK(b.grad().to_vector<double>() == std::vector<double>(100, 0.0));
  }
}

TEST_CASE("linear_cross_entropy: CUDA rejects target ids outside [0, V), naming the id and the row",
          "[cuda][linear_cross_entropy]") {
  const Device gpu = Device::cuda(0);
  const Tensor x = Tensor::zeros({4, 8}, DType::f32, gpu), w = Tensor::zeros({50, 8}, DType::f32, gpu);
  for (DType target_dtype : {DType::i64, DType::i32}) {
    INFO(dtype_name(target_dtype));
    const Tensor targets = Tensor::from_vector<int64_t>({0, 49, 1, 50}, {4}, target_dtype);
    for (const Tensor& t : {targets, to(targets, gpu)}) {
      const std::string message = error_message([&] { linear_cross_entropy(x, w, Tensor(), t); });
      CHECK(contains(message, "target id 50"));
      CHECK(contains(message, "row 3"));
    }
  }
  CHECK_THROWS_AS(linear_cross_entropy(Tensor::zeros({4, 8}), Tensor::zeros({50, 8}), Tensor(),
                                       to(Tensor::zeros({4}, DType::i64), gpu)),
                  Error);
}

TEST_CASE("linear_cross_entropy: CUDA holds one chunk of f32 logits, and no gradient buffers under NoGradGuard",
          "[cuda][linear_cross_entropy]") {
  // bf16, 8192 rows, D 256, V 32000: the default chunk is 2048 rows, whose f32 logits are 250 MiB (the whole
  // logits would be 1000 MiB). With gradients add the chunk's bf16 dz (125 MiB) and, kept for the backward,
  // dx (8 MiB) and dW (31.25 MiB) in f32.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Device gpu = Device::cuda(0);
  const int64_t rows = 8192, features = 256, vocab = 32000, chunk = 2048;
  const Tensor x = random_tensor({rows, features}, seed, DType::bf16, -1, 1, gpu).set_requires_grad(true);
  const Tensor w = random_tensor({vocab, features}, seed + 1, DType::bf16, -0.1, 0.1, gpu).set_requires_grad(true);
  const Tensor targets = targets_with_ignored(rows, vocab, seed + 2);
  const int64_t logits = chunk * vocab * 4, dz = chunk * vocab * 2, kept = (rows + vocab) * features * 4,
                small = int64_t{1} << 20;  // the targets, the rows' losses, the chunk's lse, scalars
  auto extra_peak = [&](bool grad) {
    GradModeGuard mode(grad);
    const int64_t before = memory_stats(gpu).current_bytes;
    reset_peak_memory(gpu);
    const Tensor loss = linear_cross_entropy(x, w, Tensor(), targets);
    if (grad) CHECK(memory_stats(gpu).current_bytes - before >= kept);
    return memory_stats(gpu).peak_bytes - before;
  };
  CHECK(extra_peak(false) <= logits + small);
  CHECK(extra_peak(true) <= logits + dz + kept + small);
}

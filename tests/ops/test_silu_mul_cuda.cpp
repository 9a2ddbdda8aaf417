// silu_mul on CUDA against the CPU reference, forward and backward, f32 and bf16 (and f64); the contiguous
// kernels (aligned and not) against the strided one; the fused op against silu(a) * b; inputs on two devices.
#include <vector>

#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
// {y, da, db} of y = silu_mul(a, b) for the seed dy (a, b and dy in any layouts).
std::vector<Tensor> forward_and_grads(const Tensor& a, const Tensor& b, const Tensor& dy) {
  return value_and_grads([](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); }, {a, b}, dy);
}
}  // namespace

TEST_CASE("silu_mul: CUDA matches CPU, contiguous, sizes not multiples of 8", "[cuda][silu_mul]") {
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    for (const Shape& shape : {Shape{37, 129}, Shape{5}, Shape{3, 1001}}) {
      const uint64_t seed = fresh_seed();
      const Tensor a = random_tensor(shape, seed, DType::f32, -6.0, 6.0).set_requires_grad(true);
      const Tensor b = random_tensor(shape, seed + 1, DType::f32, -2.0, 2.0).set_requires_grad(true);
      std::string report;
      const double error = compare_cuda_to_cpu(
          [](const std::vector<Tensor>& in) { return std::vector<Tensor>{silu_mul(in[0], in[1])}; }, {a, b}, dtype,
          &report);
      INFO(dtype_name(dtype) << " " << shape_str(shape) << " seed " << seed << "\n" << report);
      CHECK(error <= (dtype == DType::f64 ? 1e-12 : tolerance_for(dtype)));
    }
  }
}

TEST_CASE("silu_mul: CUDA matches CPU with strided inputs and a strided gradient", "[cuda][silu_mul]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    // One input used twice: as a and, transposed, as b (37 x 37, not a multiple of 8); the output transposed,
    // so the incoming gradient is strided too.
    const Tensor x = random_tensor({37, 37}, seed, DType::f32, -3.0, 3.0).set_requires_grad(true);
    INFO("seed " << seed);
    check_cuda_matches_cpu([](const Tensor& in) { return transpose(silu_mul(in, transpose(in, 0, 1)), 0, 1); }, x,
                           dtype, "silu_mul(x, xᵀ)ᵀ");
    // a read through a permutation, b contiguous, of shape [7, 33, 5].
    const Tensor a = random_tensor({5, 33, 7}, seed + 1, DType::f32, -6.0, 6.0).set_requires_grad(true);
    const Tensor b = random_tensor({7, 33, 5}, seed + 2, DType::f32, -2.0, 2.0).set_requires_grad(true);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{silu_mul(permute(in[0], {2, 1, 0}), in[1])}; },
        {a, b}, dtype, &report);
    INFO(dtype_name(dtype) << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

// The three kernels of each pass (contiguous with 16-byte accesses, contiguous one element at a time, strided)
// must give the same bits: the same values held aligned, one element into an allocation (not 16-byte aligned),
// and with stride 2; 1003 elements, not a multiple of 8.
TEST_CASE("silu_mul: contiguous and strided kernels give the same bits, aligned or not", "[cuda][silu_mul]") {
  const int64_t n = 1003;
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    check_layouts_give_same_bits(
        [](const std::vector<Tensor>& in) { return forward_and_grads(in[0], in[1], in[2]); },
        {random_tensor({n}, seed, dtype, -6.0, 6.0), random_tensor({n}, seed + 1, dtype, -2.0, 2.0),
         random_tensor({n}, seed + 2, dtype)},
        Device::cuda(0), {{0, 0, 0}, {1, 1, 1}, {0, 1, 0}});
  }
}

TEST_CASE("silu_mul: the fused op against silu(a) * b on CUDA", "[cuda][silu_mul]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Device gpu = Device::cuda(0);
    const Tensor a = random_tensor({64, 77}, seed, dtype, -6.0, 6.0, gpu);
    const Tensor b = random_tensor({64, 77}, seed + 1, dtype, -2.0, 2.0, gpu);
    NoGradGuard no_grad;
    // f32: the same operations, up to the contraction of a multiply-add; bf16: one rounding instead of two.
    CHECK(relative_error(silu_mul(a, b), mul(silu(a), b)) <= (dtype == DType::f32 ? 1e-6 : 1e-2));
  }
}

TEST_CASE("silu_mul: inputs on two devices are refused", "[cuda][silu_mul]") {
  const std::string message =
      error_message([] { silu_mul(Tensor::zeros({2, 3}), Tensor::zeros({2, 3}, DType::f32, Device::cuda(0))); });
  CHECK(contains(message, "silu_mul"));
  CHECK(contains(message, "devices"));
}

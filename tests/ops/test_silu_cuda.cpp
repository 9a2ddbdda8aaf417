// silu's one-pass backward on CUDA (BinaryOp::silu_backward in cuda/elementwise.cu's binary kernels): forward and
// backward against the CPU reference in f32, bf16 and f64 on sizes not multiples of 8, strided inputs and
// incoming gradients, the contiguous kernels (aligned and not) against the strided one bit for bit, silu_mul's da
// at b = 1, and the composed formula it replaces.
#include <vector>

#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
// {y, dx} of y = silu(x) for the seed dy (x and dy in any layouts).
std::vector<Tensor> silu_and_grad(const Tensor& x, const Tensor& dy) {
  return value_and_grads([](const std::vector<Tensor>& in) { return silu(in[0]); }, {x}, dy);
}
}  // namespace

TEST_CASE("silu: CUDA matches CPU, contiguous, sizes not multiples of 8", "[cuda][silu]") {
  for (const Shape& shape : {Shape{37, 129}, Shape{5}, Shape{3, 1001}}) {
    const uint64_t seed = fresh_seed();
    INFO("seed " << seed);
    const Tensor x = random_tensor(shape, seed, DType::f32, -8.0, 8.0).set_requires_grad(true);
    const auto f = [](const Tensor& in) { return silu(in); };
    check_cuda_matches_cpu(f, x, DType::f32, "silu");
    check_cuda_matches_cpu(f, x, DType::bf16, "silu");
    // f64 in f64 registers: ~1e-16 apart (a pass computing f64 in f32 would be ~1e-7 off).
    std::string report;
    const double error = compare_cuda_to_cpu(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{silu(in[0])}; }, {x}, DType::f64, &report);
    INFO(shape_str(shape) << " f64\n" << report);
    CHECK(error <= 1e-12);
  }
}

TEST_CASE("silu: CUDA matches CPU with a strided input and a strided gradient", "[cuda][silu]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO("seed " << seed);
    // [37, 33] read transposed, the output transposed back: x and dy both strided, 1221 elements.
    const Tensor x = random_tensor({33, 37}, seed, DType::f32, -6.0, 6.0).set_requires_grad(true);
    check_cuda_matches_cpu([](const Tensor& in) { return transpose(silu(transpose(in, 0, 1)), 0, 1); }, x, dtype,
                           "silu(xᵀ)ᵀ");
    // A permuted [7, 33, 5] input, its gradient contiguous.
    const Tensor p = random_tensor({5, 33, 7}, seed + 1, DType::f32, -6.0, 6.0).set_requires_grad(true);
    check_cuda_matches_cpu([](const Tensor& in) { return silu(permute(in, {2, 1, 0})); }, p, dtype, "silu(permuted)");
  }
}

// The three binary kernels (contiguous with 16-byte accesses, contiguous one element at a time, strided) must
// give the same bits: x and dy held aligned, one element into an allocation (not 16-byte aligned), and with
// stride 2; 1003 elements, not a multiple of 8.
TEST_CASE("silu: contiguous and strided backward kernels give the same bits, aligned or not", "[cuda][silu]") {
  const int64_t n = 1003;
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    check_layouts_give_same_bits([](const std::vector<Tensor>& in) { return silu_and_grad(in[0], in[1]); },
                                 {random_tensor({n}, seed, dtype, -8.0, 8.0), random_tensor({n}, seed + 1, dtype)},
                                 Device::cuda(0), {{0, 0}, {1, 1}, {0, 1}, {1, 2}});
  }
}

TEST_CASE("silu: on CUDA the backward is silu_mul's da at b = 1, and near the composed formula", "[cuda][silu]") {
  const Device gpu = Device::cuda(0);
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const Tensor x = to(random_tensor({64, 77}, seed, dtype, -8.0, 8.0), gpu);
    const Tensor dy = to(random_tensor({64, 77}, seed + 1, dtype), gpu);
    const Tensor dx = silu_and_grad(x, dy)[1];
    // One silu_derivative in both kernels, and dy·1 is exact.
    const std::vector<Tensor> fused = value_and_grads(
        [](const std::vector<Tensor>& in) { return silu_mul(in[0], in[1]); }, {x, Tensor::ones({64, 77}, dtype, gpu)},
        dy);
    CHECK(same_bits(dx, fused[1]));
    // The composition of 7 passes: f32, the same operations up to nvcc's contraction of x·(1 − s) + 1; bf16, one
    // rounding instead of seven.
    NoGradGuard no_grad;
    const Tensor s = sigmoid(x);
    const Tensor composed = mul(dy, mul(s, add(mul(x, add(neg(s), 1.0)), 1.0)));
    CHECK(relative_error(dx, composed) <= (dtype == DType::f32 ? 1e-6 : 1e-2));
  }
}

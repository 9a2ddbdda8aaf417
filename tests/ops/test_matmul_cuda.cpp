// matmul on CUDA (cuBLAS) against the CPU GEMM, forward and backward, f32 (no TF32: 1e-5), bf16
// (1e-2) and f64 (against the f32 CPU result: 1e-5), on sizes that are not multiples of the tile
// sizes, broadcast batches, shared operands (batch stride 0), transposed views and one large product;
// and the raw GEMM's f32 output from bf16 operands against the CPU GEMM's.
#include "core/cuda_context.h"
#include "cuda/matmul.h"
#include "ops/detail/cpu_gemm.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

struct Case {
  const char* name;
  Shape a, b;
  bool transpose_a = false, transpose_b = false;  // operands stored transposed, used through views
};

void compare(const Case& c) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const uint64_t seed = fresh_seed();
    Tensor a = random_tensor(c.a, seed, DType::f32).set_requires_grad(true);
    Tensor b = random_tensor(c.b, seed + 1, DType::f32).set_requires_grad(true);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [&](const std::vector<Tensor>& in) {
          const Tensor x = c.transpose_a ? transpose(in[0], -1, -2) : in[0];
          const Tensor y = c.transpose_b ? transpose(in[1], -1, -2) : in[1];
          return std::vector<Tensor>{matmul(x, y)};
        },
        {a, b}, dtype, &report);
    INFO(c.name << " " << dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

}  // namespace

TEST_CASE("matmul: CUDA matches CPU on odd sizes", "[cuda][matmul]") {
  compare({"37x65x129", {37, 65}, {65, 129}});
  compare({"m = 1, n = 1", {1, 33}, {33, 1}});
  compare({"batched", {3, 37, 65}, {3, 65, 129}});
}

TEST_CASE("matmul: CUDA matches CPU with broadcast batches and shared operands", "[cuda][matmul]") {
  compare({"broadcast both ways", {3, 1, 37, 65}, {2, 65, 129}});
  compare({"2-D b shared by the batch", {4, 37, 65}, {65, 129}});
  compare({"2-D a shared by the batch", {37, 65}, {4, 65, 129}});
}

TEST_CASE("matmul: CUDA matches CPU on transposed views", "[cuda][matmul]") {
  compare({"a^T", {2, 65, 37}, {2, 65, 129}, true, false});
  compare({"b^T", {2, 37, 65}, {129, 65}, false, true});
  compare({"a^T b^T", {65, 37}, {129, 65}, true, true});
  compare({"a^T with a shared b", {2, 65, 37}, {65, 129}, true, false});
}

TEST_CASE("matmul: CUDA matches CPU on a large product", "[cuda][matmul]") {
  compare({"512x1024x768", {512, 1024}, {1024, 768}});
}

TEST_CASE("gemm: CUDA f32 output from bf16 operands matches the CPU GEMM", "[cuda][matmul]") {
  // C (f32, accumulated into) += A Bᵀ over a batch of 3 with sizes off the tile grid. Both sides
  // multiply the same bf16 values in f32 without rounding the result: only the summation order
  // differs (relative ~1e-7 for k = 300).
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t batch = 3, m = 37, n = 129, k = 300;
  const Tensor a = cast(random_tensor({batch, m, k}, seed, DType::f32), DType::bf16);
  const Tensor b = cast(random_tensor({batch, n, k}, seed + 1, DType::f32), DType::bf16);
  const Tensor c0 = random_tensor({batch, m, n}, seed + 2, DType::f32);
  auto run = [&](Device device) {
    const Tensor x = to(a, device), y = to(b, device), out = Tensor::empty(c0.shape(), DType::f32, device);
    copy_(out, c0);  // a copy: c0 itself stays the start of both runs
    cuda::Gemm g;
    g.dtype = DType::bf16;
    g.batch = batch;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = {x.raw_data(), k, m * k, false};
    g.b = {y.raw_data(), k, n * k, true};
    g.c = out.raw_data();
    g.ldc = n;
    g.c_batch_stride = m * n;
    g.accumulate = true;
    g.f32_output = true;
    if (device.is_cpu()) {
      detail::cpu_gemm(g);
    } else {
      DeviceGuard guard(device);
      cuda::gemm(g, device.index, compute_stream(device));
    }
    return to(out, Device::cpu());
  };
  CHECK(relative_error(run(Device::cuda(0)), run(Device::cpu())) <= 1e-6);
}

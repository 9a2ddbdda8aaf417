// matmul on CUDA (cuBLAS) against the CPU GEMM, forward and backward, f32 (no TF32: 1e-5), bf16
// (1e-2) and f64 (against the f32 CPU result: 1e-5), on sizes that are not multiples of the tile
// sizes, broadcast batches, shared operands (batch stride 0), transposed views and one large product.
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

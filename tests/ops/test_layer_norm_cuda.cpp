// layer_norm on CUDA against the CPU reference, forward and backward (dx, dweight, dbias), in f32
// (1e-5), bf16 (1e-2) and f64 (1e-5; the CPU reference runs in f64): short and long rows (not
// multiples of the block size), many rows (the weight gradient's partial sums split into several
// row slices), with and without weight and bias.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("layer_norm: CUDA matches CPU", "[cuda][layer_norm]") {
  const Shape shapes[] = {{37, 129}, {3, 5, 4099}, {9000, 65}, {7, 1}};
  for (const Shape& shape : shapes) {
    for (int params = 0; params < 3; ++params) {  // weight and bias, weight only, neither
      for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
        // A norm over a single element is degenerate: its input gradient is zero or pure rounding
        // (1 - x_hat^2 cancels), so only f64 can be compared there; the shape still checks indexing.
        if (shape.back() == 1 && dtype != DType::f64) continue;
        const uint64_t seed = fresh_seed();
        const int64_t n = shape.back();
        Tensor x = random_tensor(shape, seed, DType::f32, -1.0, 3.0).set_requires_grad(true);
        Tensor w = params < 2 ? random_tensor({n}, seed + 1, DType::f32, 0.5, 1.5).set_requires_grad(true) : Tensor();
        Tensor b = params < 1 ? random_tensor({n}, seed + 2, DType::f32).set_requires_grad(true) : Tensor();
        std::string report;
        const double error = compare_cuda_to_cpu(
            [](const std::vector<Tensor>& in) { return std::vector<Tensor>{layer_norm(in[0], in[1], in[2], 1e-5)}; },
            {x, w, b}, dtype, &report);
        INFO(shape_str(shape) << " params " << params << " " << dtype_name(dtype) << " seed " << seed << "\n" << report);
        CHECK(error <= tolerance_for(dtype));
      }
    }
  }
}

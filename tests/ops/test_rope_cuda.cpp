// Rotary embedding on CUDA against the CPU reference, forward and backward, f32 and bf16.
#include "ops/ops.h"
#include "ops/rope.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("rope: CUDA matches CPU", "[cuda][rope]") {
  struct Case {
    Shape shape;  // [B, L, H, d]
    int64_t chunk, start;
    double base;
  };
  // Head dims below and above one warp of pairs, chunk sizes 1, 37, 128 and 2048, a cache offset.
  const Case cases[] = {
      {{2, 5, 3, 6}, 1, 0, 10000.0},     {{2, 74, 3, 64}, 37, 0, 10000.0},  {{1, 256, 2, 256}, 128, 0, 100000.0},
      {{1, 2048, 1, 66}, 2048, 0, 10000.0}, {{2, 9, 2, 64}, 128, 100, 10000.0}, {{1, 4096, 2, 256}, 2048, 0, 10000.0},
  };
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const Case& c : cases) {
      const uint64_t seed = fresh_seed();
      Tensor x = random_tensor(c.shape, seed, DType::f32).set_requires_grad(true);
      std::string report;
      const double error = compare_cuda_to_cpu(
          [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{rope(in[0], c.chunk, c.start, c.base)}; }, {x},
          dtype, &report);
      INFO(dtype_name(dtype) << " " << shape_str(c.shape) << " chunk " << c.chunk << " start " << c.start << " seed "
                             << seed << "\n"
                             << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

// linear on CUDA against the CPU, forward and backward (dx, dW, db), f32 (1e-5), bf16 (1e-2)
// and f64 (against the f32 CPU result, 1e-5).
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

void compare(const char* name, const Shape& x_shape, int64_t out_features, bool with_bias) {
  const int64_t in_features = x_shape.back();
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const uint64_t seed = fresh_seed();
    Tensor x = random_tensor(x_shape, seed, DType::f32).set_requires_grad(true);
    Tensor w = random_tensor({out_features, in_features}, seed + 1, DType::f32).set_requires_grad(true);
    Tensor b = with_bias ? random_tensor({out_features}, seed + 2, DType::f32).set_requires_grad(true) : Tensor();
    std::string report;
    const double error = compare_cuda_to_cpu(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], in[1], in[2])}; }, {x, w, b},
        dtype, &report);
    INFO(name << " " << dtype_name(dtype) << (with_bias ? " with" : " without") << " bias, seed " << seed << "\n"
              << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

}  // namespace

TEST_CASE("linear: CUDA matches CPU", "[cuda][linear]") {
  for (bool with_bias : {true, false}) {
    compare("[3, 37, 65] -> 129", {3, 37, 65}, 129, with_bias);
    compare("[65] -> 37", {65}, 37, with_bias);
  }
  compare("[512, 1024] -> 768", {512, 1024}, 768, true);
}

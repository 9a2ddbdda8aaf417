// where and masked_fill on CUDA against the CPU reference: broadcasting of all three operands,
// strided operands, every condition dtype, forward and backward, f32 and bf16.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("where: CUDA matches CPU with broadcasting and strided operands", "[cuda][where]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (DType condition_dtype : {DType::i64, DType::i32, DType::f32}) {
      const uint64_t seed = fresh_seed();
      Tensor condition = cast(random_ids({33, 1}, 2, seed), condition_dtype);
      Tensor a = random_tensor({17, 33, 5}, seed + 1, DType::f32).set_requires_grad(true);  // used as [5, 33, 17]
      Tensor b = random_tensor({17}, seed + 2, DType::f32).set_requires_grad(true);
      std::string report;
      const double error = compare_cuda_to_cpu(
          [&](const std::vector<Tensor>& in) {
            return std::vector<Tensor>{where(in[0], transpose(in[1], 0, 2), in[2])};
          },
          {condition, a, b}, dtype, &report);
      INFO(dtype_name(dtype) << " condition " << dtype_name(condition_dtype) << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("where: CUDA matches CPU on contiguous operands of one shape", "[cuda][where]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor condition = random_ids({129, 65}, 2, seed, DType::i32);
    Tensor a = random_tensor({129, 65}, seed + 1, DType::f32).set_requires_grad(true);
    Tensor b = random_tensor({129, 65}, seed + 2, DType::f32).set_requires_grad(true);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{where(in[0], in[1], in[2])}; },
        {condition, a, b}, dtype, &report);
    INFO(dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

TEST_CASE("where: a bf16 condition on CUDA", "[cuda][where]") {
  Tensor values = Tensor::from_vector<float>({0.0f, 2.0f, -0.0f, -3.0f}, {4});
  Tensor condition = cast(to(values, Device::cuda(0)), DType::bf16);
  Tensor a = Tensor::ones({4}, DType::f32, Device::cuda(0)), b = Tensor::zeros({4}, DType::f32, Device::cuda(0));
  CHECK(where(condition, a, b).to_vector<float>() == std::vector<float>{0, 1, 0, 1});
}

TEST_CASE("masked_fill: CUDA matches CPU", "[cuda][where]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor x = random_tensor({6, 45, 45}, seed, DType::f32).set_requires_grad(true);
    Tensor mask = random_ids({45, 45}, 2, seed + 1);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [](const std::vector<Tensor>& in) { return std::vector<Tensor>{masked_fill(in[0], in[1], -1e4)}; },
        {x, mask}, dtype, &report);
    INFO(dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

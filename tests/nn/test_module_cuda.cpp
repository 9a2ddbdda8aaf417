// nn/ modules on CUDA: moving parameters in place keeps their handles, values and gradients;
// layers created on the GPU start from the same values as on the CPU.
#include "nn/embedding.h"
#include "nn/linear.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("Module::to moves parameters and gradients in place, and back", "[cuda][nn][module]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  Linear fc(37, 300, true, {.generator = &gen});
  const Tensor weight = fc.weight();  // a handle held elsewhere, as an optimizer would
  const std::vector<float> values = weight.to_vector<float>();
  const Tensor grad = random_tensor({300, 37}, seed + 1, DType::f32);
  weight.set_grad(grad);
  fc.to(Device::cuda(0));
  CHECK(weight.is_cuda());
  CHECK(fc.weight().is_same(weight));
  CHECK(fc.bias().is_cuda());
  CHECK(weight.requires_grad());
  CHECK(weight.to_vector<float>() == values);
  REQUIRE(weight.grad().defined());
  CHECK(weight.grad().is_cuda());
  CHECK(weight.grad().to_vector<float>() == grad.to_vector<float>());
  fc.to(Device::cpu());
  CHECK(weight.is_cpu());
  CHECK(weight.to_vector<float>() == values);
}

TEST_CASE("layers initialised on CUDA hold the CPU's initial values", "[cuda][nn][init]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator cpu_gen(seed), gpu_gen(seed);
  const Linear cpu(65, 129, true, {.generator = &cpu_gen});
  const Linear gpu(65, 129, true, {.device = Device::cuda(0), .generator = &gpu_gen});
  CHECK(gpu.weight().is_cuda());
  CHECK(gpu.weight().to_vector<float>() == cpu.weight().to_vector<float>());
  CHECK(gpu.bias().to_vector<float>() == cpu.bias().to_vector<float>());
  const Embedding cpu_table(100, 17, {.generator = &cpu_gen});
  const Embedding gpu_table(100, 17, {.dtype = DType::bf16, .device = Device::cuda(0), .generator = &gpu_gen});
  CHECK(gpu_table.weight().dtype() == DType::bf16);
  const std::vector<float> a = cpu_table.weight().to_vector<float>(), b = gpu_table.weight().to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(b[i] == static_cast<float>(bf16(a[i])));
}

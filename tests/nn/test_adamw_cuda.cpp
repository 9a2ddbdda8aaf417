// nn/ AdamW on CUDA (the fused kernel, one launch per parameter) against the CPU implementation:
// the same parameters and gradients for several steps give the same weights and moments.
#include "nn/adamw.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

Tensor on(const Tensor& t, const Device& device) {
  Tensor out = Tensor::empty(t.shape(), t.dtype(), device);
  copy_(out, t);
  return out;
}

}  // namespace

TEST_CASE("AdamW: CUDA matches CPU after several steps", "[cuda][nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Sizes that are not multiples of the block size, one larger than a single wave of blocks.
  const Shape shapes[] = {{1}, {255}, {3, 257}, {1000, 71}};
  const AdamWOptions options{.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  std::vector<Parameter> cpu_parameters, gpu_parameters;
  for (size_t k = 0; k < std::size(shapes); ++k) {
    const Tensor initial = random_tensor(shapes[k], seed + k, DType::f32, -1.0, 1.0);
    const std::string name = "p" + std::to_string(k);
    cpu_parameters.push_back({name, on(initial, Device::cpu()).set_requires_grad(true)});
    gpu_parameters.push_back({name, on(initial, Device::cuda(0)).set_requires_grad(true)});
  }
  AdamW cpu(cpu_parameters, options), gpu(gpu_parameters, options);
  for (int step = 1; step <= 8; ++step) {
    for (size_t k = 0; k < std::size(shapes); ++k) {
      const double scale = step % 4 == 0 ? 10.0 : 0.1;
      const Tensor g = random_tensor(shapes[k], seed + 100 * step + k, DType::f32, -scale, scale);
      cpu_parameters[k].tensor.set_grad(on(g, Device::cpu()));
      gpu_parameters[k].tensor.set_grad(on(g, Device::cuda(0)));
    }
    if (step == 5) cpu.options().lr = gpu.options().lr = 1e-3;  // as a learning-rate schedule would
    cpu.step();
    gpu.step();
  }
  for (size_t k = 0; k < std::size(shapes); ++k) {
    INFO("parameter " << k << " " << shape_str(shapes[k]));
    CHECK(gpu_parameters[k].tensor.is_cuda());
    CHECK(relative_error(gpu_parameters[k].tensor, cpu_parameters[k].tensor) <= 1e-6);
    CHECK(relative_error(gpu.exp_avg(k), cpu.exp_avg(k)) <= 1e-6);
    CHECK(relative_error(gpu.exp_avg_sq(k), cpu.exp_avg_sq(k)) <= 1e-6);
    CHECK(gpu.step_count(k) == 8);
  }
}

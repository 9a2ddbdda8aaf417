// dropout on CUDA: the same generator state gives the same mask (and values) as the CPU, bit for
// bit, in forward and backward, for f32 and bf16 and strided inputs; the keep rate on a large
// tensor; and the usual CUDA-vs-CPU comparison.
#include <cmath>

#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("dropout: CPU and CUDA draw identical masks from the same seed", "[cuda][dropout]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    // 37 * 129 = 4773 elements: not a multiple of 4 (one Philox block) nor of the thread block.
    Tensor x = cast(random_tensor({37, 129}, seed, DType::f32, 0.5, 1.5), dtype);
    for (bool strided : {false, true}) {
      INFO("strided " << strided);
      Tensor cpu_in = strided ? transpose(x, 0, 1) : x;
      Tensor gpu_in = strided ? transpose(to(x, Device::cuda(0)), 0, 1) : to(x, Device::cuda(0));
      Generator cpu_gen(seed + 1), gpu_gen(seed + 1);
      cpu_gen.offset = gpu_gen.offset = 5;
      const std::vector<float> cpu = dropout(cpu_in, 0.4, true, cpu_gen).to_vector<float>();
      const std::vector<float> gpu = dropout(gpu_in, 0.4, true, gpu_gen).to_vector<float>();
      CHECK(cpu == gpu);  // zero pattern and scaled values alike
      CHECK(cpu_gen.offset == gpu_gen.offset);
    }
  }
}

TEST_CASE("dropout: CUDA backward uses the forward mask, as on the CPU", "[cuda][dropout]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({19, 53}, seed, DType::f32, 0.5, 1.5);
  Tensor dy = random_tensor({19, 53}, seed + 1, DType::f32);
  auto gradient = [&](const Device& device) {
    Tensor leaf = to(x, device).detach().set_requires_grad(true);
    Generator gen(seed + 2);
    backward(dropout(leaf, 0.25, true, gen), to(dy, device));
    return leaf.grad().to_vector<float>();
  };
  CHECK(gradient(Device::cuda(0)) == gradient(Device::cpu()));
}

TEST_CASE("dropout: CUDA keep rate over 1M elements is 1 - p within 4 sigma", "[cuda][dropout]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const double p = 0.2;
  const int64_t n = 1 << 20;
  Generator gen(seed);
  const Tensor kept = sum(dropout(Tensor::ones({n}, DType::f32, Device::cuda(0)), p, true, gen));
  // Each kept element is 1 / (1 - p) = 1.25; every partial sum is a multiple of 1/4 below 2^21, so the
  // f32 sum is exact.
  const double count = kept.item() * (1.0 - p);
  CHECK(std::abs(count - n * (1.0 - p)) <= 4.0 * std::sqrt(n * p * (1.0 - p)));
}

TEST_CASE("dropout: CUDA matches CPU through compare_cuda_to_cpu", "[cuda][dropout]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor x = random_tensor({33, 70}, seed, DType::f32).set_requires_grad(true);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [&](const std::vector<Tensor>& in) {
          Generator gen(seed + 1);  // the same stream on both devices
          return std::vector<Tensor>{dropout(in[0], 0.3, true, gen)};
        },
        {x}, dtype, &report);
    INFO(dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

// nn/ gradient clipping on CUDA (the multi-tensor f64 sum of squares and scaling, cuda/grad_norm.h) against
// the CPU: the same gradients give the same norm, the same clipped gradients, and the same parameter named
// by the finite check; long lists of tensors of every size around the chunk, weighted; clipping reads the
// norm on the device without the host waiting.
#include <cmath>
#include <limits>

#include "core/cuda_context.h"
#include "cuda/multi_tensor.h"

#include "nn/grad_clip.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

Tensor on(const Tensor& t, const Device& device, DType dtype) {
  Tensor out = Tensor::empty(t.shape(), dtype, device);
  copy_(out, t);
  return out;
}

}  // namespace

TEST_CASE("grad_clip: CUDA norm and clipping match the CPU", "[cuda][nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Sizes that are not multiples of the block size; one larger than the 1024 x 256 threads of the grid.
  const Shape shapes[] = {{1}, {255}, {3, 257}, {1100, 300}};
  for (const DType dtype : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dtype));
    std::vector<Parameter> cpu, gpu;
    for (size_t k = 0; k < std::size(shapes); ++k) {
      // The gradient rounded to `dtype` first, so both sides see the same values.
      const Tensor g = on(random_tensor(shapes[k], seed + k, DType::f32, -2.0, 2.0), Device::cpu(), dtype);
      const std::string name = "p" + std::to_string(k);
      cpu.push_back({name, Tensor::zeros(shapes[k], dtype, Device::cpu()).set_requires_grad(true)});
      gpu.push_back({name, Tensor::zeros(shapes[k], dtype, Device::cuda(0)).set_requires_grad(true)});
      cpu.back().tensor.set_grad(on(g, Device::cpu(), dtype));
      gpu.back().tensor.set_grad(on(g, Device::cuda(0), dtype));
    }
    const double cpu_norm = grad_norm(cpu).norm, gpu_norm = grad_norm(gpu).norm;
    CHECK(std::abs(gpu_norm - cpu_norm) <= 1e-12 * cpu_norm);
    CHECK(clip_grad_norm_(gpu, cpu_norm / 3) == gpu_norm);
    clip_grad_norm_(cpu, cpu_norm / 3);
    for (size_t k = 0; k < cpu.size(); ++k) {
      const std::vector<double> a = cpu[k].tensor.grad().to_vector<double>(), b = gpu[k].tensor.grad().to_vector<double>();
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (std::abs(a[i]) + 1e-30));
      CHECK(worst <= tolerance_for(dtype));
    }
    // The same gradient twice gives the same bits (no atomics).
    CHECK(grad_norm(gpu).norm == grad_norm(gpu).norm);
  }
}

TEST_CASE("grad_clip: CUDA finite check names the first bad parameter", "[cuda][nn][grad_clip]") {
  std::vector<Parameter> gpu;
  for (int k = 0; k < 3; ++k) {
    const Tensor p = Tensor::zeros({300}, DType::f32, Device::cuda(0)).set_requires_grad(true);
    Tensor g = random_tensor({300}, fresh_seed(), DType::f32);
    if (k > 0) g.data<float>()[100 + k] = k == 1 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    p.set_grad(on(g, Device::cuda(0), DType::f32));
    gpu.push_back({"p" + std::to_string(k), p});
  }
  const GradNorm n = grad_norm(gpu);
  CHECK(n.first_nonfinite == "p1");
  CHECK_FALSE(std::isfinite(n.norm));
}

TEST_CASE("grad_clip: CUDA multi-tensor norm of a long weighted list matches the CPU; clipping never waits",
          "[cuda][nn][grad_clip]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Around the chunk size, empty, undefined, and 60 small tensors: 100+ chunks in one launch.
  const int64_t chunk = cuda::kMultiTensorChunk;
  std::vector<int64_t> sizes = {1, chunk - 1, chunk, chunk + 1, 0, -1, 3 * chunk + 17, 1000};
  for (int k = 0; k < 60; ++k) sizes.push_back(1 + 37 * k);
  std::vector<Tensor> cpu, gpu;
  std::vector<double> weights;
  for (size_t k = 0; k < sizes.size(); ++k) {
    weights.push_back(k % 3 == 0 ? 0.5 : 1.0);
    if (sizes[k] < 0) {
      cpu.emplace_back();
      gpu.emplace_back();
      continue;
    }
    cpu.push_back(random_tensor({sizes[k]}, seed + k, DType::f32, -3.0, 3.0));
    gpu.push_back(on(cpu.back(), Device::cuda(0), DType::f32));
  }
  const std::vector<double> expected = global_norm(cpu, weights).values.to_vector<double>();
  const GlobalNorm n = global_norm(gpu, weights);
  const std::vector<double> got = n.values.to_vector<double>();
  REQUIRE(got.size() == sizes.size() + 1);
  for (size_t k = 0; k < got.size(); ++k) {
    INFO("entry " << k);
    CHECK(std::abs(got[k] - expected[k]) <= 1e-12 * expected[k]);
  }
  CHECK(global_norm(gpu, weights).values.to_vector<double>() == got);  // deterministic

  // Clipping to half the norm: no host synchronisation, and each value is x * float(max_norm / (norm + 1e-6))
  // rounded to f32, with the norm the device computed.
  const int64_t before = host_synchronizations();
  clip_to_norm_(gpu, n.norm(), got.back() / 2);
  CHECK(host_synchronizations() == before);
  const float c = static_cast<float>(got.back() / 2 / (got.back() + 1e-6));
  for (size_t k = 0; k < gpu.size(); ++k) {
    if (!gpu[k].defined()) continue;
    INFO("tensor " << k);
    const std::vector<float> x = cpu[k].to_vector<float>(), y = gpu[k].to_vector<float>();
    size_t wrong = 0;
    for (size_t i = 0; i < x.size(); ++i) wrong += y[i] != x[i] * c;
    CHECK(wrong == 0);
  }
}

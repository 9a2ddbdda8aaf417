// nn/ AdamW on CUDA (one fused multi-tensor launch for every parameter, cuda/adamw.h) against the CPU
// implementation: the same parameters and gradients for several steps give the same weights and moments,
// bit for bit (base/adamw_math.h); a step gated on a non-finite norm on the device changes nothing and
// makes the host wait for nothing; the bf16 compute copies the update writes are the casts of the new masters.
#include <limits>

#include "core/cuda_context.h"
#include "cuda/multi_tensor.h"
#include "nn/adamw.h"
#include "nn/compute_copy.h"
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

// Parameters "p0", "p1", ... of `shapes`, random in [-1, 1) from seed + k, the same values on the CPU and
// on the GPU.
void twin_parameters(const std::vector<Shape>& shapes, uint64_t seed, std::vector<Parameter>& cpu,
                     std::vector<Parameter>& gpu) {
  for (size_t k = 0; k < shapes.size(); ++k) {
    const Tensor initial = random_tensor(shapes[k], seed + k, DType::f32);
    const std::string name = "p" + std::to_string(k);
    cpu.push_back({name, on(initial, Device::cpu()).set_requires_grad(true)});
    gpu.push_back({name, on(initial, Device::cuda(0)).set_requires_grad(true)});
  }
}

}  // namespace

TEST_CASE("AdamW: CUDA matches CPU after several steps", "[cuda][nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Sizes that are not multiples of the block size, one larger than a single wave of blocks.
  const std::vector<Shape> shapes = {{1}, {255}, {3, 257}, {1000, 71}};
  const AdamWOptions options{.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  std::vector<Parameter> cpu_parameters, gpu_parameters;
  twin_parameters(shapes, seed, cpu_parameters, gpu_parameters);
  AdamW cpu(cpu_parameters, options), gpu(gpu_parameters, options);
  for (int step = 1; step <= 8; ++step) {
    for (size_t k = 0; k < shapes.size(); ++k) {
      const double scale = step % 4 == 0 ? 10.0 : 0.1;
      const Tensor g = random_tensor(shapes[k], seed + 100 * step + k, DType::f32, -scale, scale);
      cpu_parameters[k].tensor.set_grad(on(g, Device::cpu()));
      gpu_parameters[k].tensor.set_grad(on(g, Device::cuda(0)));
    }
    if (step == 5) cpu.options().lr = gpu.options().lr = 1e-3;  // as a learning-rate schedule would
    cpu.step();
    gpu.step();
  }
  for (size_t k = 0; k < shapes.size(); ++k) {
    INFO("parameter " << k << " " << shape_str(shapes[k]));
    CHECK(gpu_parameters[k].tensor.is_cuda());
    CHECK(relative_error(gpu_parameters[k].tensor, cpu_parameters[k].tensor) <= 1e-6);
    CHECK(relative_error(gpu.exp_avg(k), cpu.exp_avg(k)) <= 1e-6);
    CHECK(relative_error(gpu.exp_avg_sq(k), cpu.exp_avg_sq(k)) <= 1e-6);
    // The same explicit fmaf and IEEE division and square root on both sides: the same bits.
    CHECK(gpu_parameters[k].tensor.to_vector<float>() == cpu_parameters[k].tensor.to_vector<float>());
    CHECK(gpu.exp_avg_sq(k).to_vector<float>() == cpu.exp_avg_sq(k).to_vector<float>());
    CHECK(gpu.step_count(k) == 8);
  }
}

TEST_CASE("AdamW: CUDA over many parameters around the chunk size, bit for bit; a gated step waits for nothing",
          "[cuda][nn][adamw]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t chunk = cuda::kMultiTensorChunk;
  std::vector<int64_t> sizes = {chunk, chunk + 1, 2 * chunk - 1, 5 * chunk + 3};
  for (int k = 0; k < 40; ++k) sizes.push_back(1 + 61 * k);
  AdamWOptions options{.lr = 1e-2, .weight_decay = 0.1};
  options.no_weight_decay = [](const std::string& name) { return name.back() == '3'; };  // per-parameter scalars
  std::vector<Shape> shapes;
  for (int64_t n : sizes) shapes.push_back({n});
  std::vector<Parameter> cpu_parameters, gpu_parameters;
  twin_parameters(shapes, seed, cpu_parameters, gpu_parameters);
  AdamW cpu(cpu_parameters, options), gpu(gpu_parameters, options);
  const Tensor finite = Tensor::full({1}, 2.0, DType::f64, Device::cuda(0));
  const Tensor nan = Tensor::full({1}, std::numeric_limits<double>::quiet_NaN(), DType::f64, Device::cuda(0));
  for (int step = 1; step <= 3; ++step) {
    for (size_t k = 0; k < sizes.size(); ++k) {
      // Parameter 7 gets no gradient at step 2: it is left out of that launch.
      const bool skipped = k == 7 && step == 2;
      const Tensor g = random_tensor({sizes[k]}, seed + 1000 * step + k, DType::f32);
      cpu_parameters[k].tensor.set_grad(skipped ? Tensor() : on(g, Device::cpu()));
      gpu_parameters[k].tensor.set_grad(skipped ? Tensor() : on(g, Device::cuda(0)));
    }
    cpu.step();
    const int64_t before = host_synchronizations();
    gpu.step_unless_nonfinite(finite);
    CHECK(host_synchronizations() == before);
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    INFO("parameter " << k << " of " << sizes[k]);
    CHECK(gpu_parameters[k].tensor.to_vector<float>() == cpu_parameters[k].tensor.to_vector<float>());
    CHECK(gpu.exp_avg(k).to_vector<float>() == cpu.exp_avg(k).to_vector<float>());
  }
  // A NaN norm: nothing moves.
  std::vector<std::vector<float>> kept;
  for (const Parameter& p : gpu_parameters) kept.push_back(p.tensor.to_vector<float>());
  const int64_t before = host_synchronizations();
  gpu.step_unless_nonfinite(nan);
  CHECK(host_synchronizations() == before);
  for (size_t k = 0; k < sizes.size(); ++k) CHECK(gpu_parameters[k].tensor.to_vector<float>() == kept[k]);
}

TEST_CASE("AdamW: CUDA writes the bf16 compute copies in its pass, the cast of the updated master bit for bit",
          "[cuda][nn][adamw][compute_copy]") {
  // Some parameters with a copy (made by compute_copy, as a bf16 forward does), some without; the
  // copies after each step against copy_'s cast of the new f32 values, on the GPU and against the CPU's.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t chunk = cuda::kMultiTensorChunk;
  const std::vector<Shape> shapes = {{1}, {255}, {chunk + 1}, {3 * chunk - 5}, {1000}};
  const AdamWOptions options{.lr = 1e-2, .weight_decay = 0.1};
  std::vector<Parameter> cpu_parameters, gpu_parameters;
  twin_parameters(shapes, seed, cpu_parameters, gpu_parameters);
  auto has_copy = [](size_t k) { return k != 1; };
  auto cast_of = [](const Tensor& p) {
    Tensor out = Tensor::empty(p.shape(), DType::bf16, p.device());
    copy_(out, p);
    return out.to_vector<float>();
  };
  for (size_t k = 0; k < shapes.size(); ++k)
    if (has_copy(k)) {
      compute_copy(cpu_parameters[k].tensor, DType::bf16);
      compute_copy(gpu_parameters[k].tensor, DType::bf16);
    }
  AdamW cpu(cpu_parameters, options), gpu(gpu_parameters, options);
  const Tensor nan = Tensor::full({1}, std::numeric_limits<double>::quiet_NaN(), DType::f64, Device::cuda(0));
  for (int step = 1; step <= 3; ++step) {
    for (size_t k = 0; k < shapes.size(); ++k) {
      const Tensor g = random_tensor(shapes[k], seed + 100 * step + k, DType::f32);
      cpu_parameters[k].tensor.set_grad(on(g, Device::cpu()));
      gpu_parameters[k].tensor.set_grad(on(g, Device::cuda(0)));
    }
    cpu.step();
    gpu.step();
    if (step == 2) {  // skipped: masters and copies stay as they are (the step counts advance on both)
      cpu.step_unless_nonfinite(on(nan, Device::cpu()));
      gpu.step_unless_nonfinite(nan);
    }
    const int64_t casts = compute_copy_casts();
    for (size_t k = 0; k < shapes.size(); ++k) {
      INFO("step " << step << ", parameter " << k << " " << shape_str(shapes[k]));
      const Tensor& p = gpu_parameters[k].tensor;
      const Tensor copy = compute_copy(p, DType::bf16);  // current, served without a cast
      CHECK(copy.to_vector<float>() == cast_of(p));
      CHECK(copy.to_vector<float>() == compute_copy(cpu_parameters[k].tensor, DType::bf16).to_vector<float>());
    }
    // Only the parameter without a copy was cast (by the checks above, on each device).
    CHECK(compute_copy_casts() - casts == (step == 1 ? 2 : 0));
  }
}

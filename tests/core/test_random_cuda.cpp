// Philox fills on CUDA against the CPU: the same (seed, offset) must give the same numbers on both.
// Uniforms are exact (24-bit grid, one multiply-add in f64); normals go through log/sqrt/cos/sin in
// f64 on each side, whose libraries may differ in the last f64 bit, so after rounding to f32 they
// may differ by one f32 ulp and no more.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/random.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, sizeof ia);
  std::memcpy(&ib, &b, sizeof ib);
  if ((ia < 0) != (ib < 0)) return a == b ? 0 : INT64_MAX;  // +0 and -0 are equal
  return std::abs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

const Shape kShapes[] = {{1}, {255}, {257}, {3, 1001}, {2, 3, 4, 5, 7}};

}  // namespace

TEST_CASE("uniform_: CUDA gives the CPU's values bit for bit", "[cuda][random]") {
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    for (const Shape& shape : kShapes) {
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(dtype) << " " << shape_str(shape) << " seed " << seed);
      Generator cpu_gen(seed), gpu_gen(seed);
      cpu_gen.offset = gpu_gen.offset = 12345;
      const Tensor cpu = rand(shape, dtype, Device::cpu(), cpu_gen);
      const Tensor gpu = rand(shape, dtype, Device::cuda(0), gpu_gen);
      CHECK(gpu.device() == Device::cuda(0));
      CHECK(gpu_gen.offset == cpu_gen.offset);
      CHECK(gpu.to_vector<double>() == cpu.to_vector<double>());
    }
  }
  // A range other than [0, 1), into a strided (transposed) CUDA view.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator cpu_gen(seed), gpu_gen(seed);
  const Tensor cpu = Tensor::empty({33, 65});
  uniform_(cpu, -2.0, 3.0, cpu_gen);
  const Tensor storage = Tensor::empty({65, 33}, DType::f32, Device::cuda(0));
  const Tensor view = storage.as_strided({33, 65}, {1, 33}, 0);
  uniform_(view, -2.0, 3.0, gpu_gen);
  CHECK(view.to_vector<float>() == cpu.to_vector<float>());
}

TEST_CASE("normal_: CUDA within one f32 ulp of the CPU", "[cuda][random]") {
  for (const Shape& shape : kShapes) {
    const uint64_t seed = fresh_seed();
    INFO(shape_str(shape) << " seed " << seed);
    Generator cpu_gen(seed), gpu_gen(seed);
    const Tensor cpu = Tensor::empty(shape);
    const Tensor gpu = Tensor::empty(shape, DType::f32, Device::cuda(0));
    normal_(cpu, 0.5, 1.5, cpu_gen);
    normal_(gpu, 0.5, 1.5, gpu_gen);
    const std::vector<float> a = cpu.to_vector<float>(), b = gpu.to_vector<float>();
    int64_t worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, ulp_distance(a[i], b[i]));
    CHECK(worst <= 1);
  }
}

TEST_CASE("truncated_normal_ and randn on CUDA follow the CPU stream", "[cuda][random]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator cpu_gen(seed), gpu_gen(seed);
  const Tensor cpu = Tensor::empty({1000});
  const Tensor gpu = Tensor::empty({1000}, DType::f32, Device::cuda(0));
  truncated_normal_(cpu, 0.0, 1.0, 2.0, cpu_gen);  // drawn on the host for every device: identical
  truncated_normal_(gpu, 0.0, 1.0, 2.0, gpu_gen);
  CHECK(gpu.to_vector<float>() == cpu.to_vector<float>());
  // The next draw of both generators is at the same offset.
  const std::vector<float> a = randn({513}, DType::f32, Device::cpu(), cpu_gen).to_vector<float>();
  const std::vector<float> b = randn({513}, DType::f32, Device::cuda(0), gpu_gen).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(ulp_distance(a[i], b[i]) <= 1);
}

// Elementwise ops on CUDA against the CPU reference, forward and backward, f32 and bf16; the contiguous
// kernels against the strided one.
#include <initializer_list>
#include <utility>

#include "autograd/grad_mode.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
using Unary = Tensor (*)(const Tensor&);
using Binary = Tensor (*)(const Tensor&, const Tensor&);
}  // namespace

TEST_CASE("unary ops: CUDA matches CPU", "[cuda][elementwise]") {
  const std::tuple<const char*, Unary, double, double> ops[] = {
      {"neg", neg, -2, 2},      {"exp", exp, -2, 2},   {"log", log, 0.2, 3},          {"sqrt", sqrt, 0.2, 3},
      {"rsqrt", rsqrt, 0.2, 3}, {"tanh", tanh, -2, 2}, {"sigmoid", sigmoid, -3, 3}, {"silu", silu, -3, 3},
      {"gelu", gelu, -3, 3},    {"relu", relu, -2, 2}};
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f, low, high] : ops) {
      const uint64_t seed = fresh_seed();
      Tensor x = random_tensor({37, 129}, seed, DType::f32, low, high).set_requires_grad(true);
      std::string report;
      const double error = compare_cuda_to_cpu([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0])}; },
                                               {x}, dtype, &report);
      INFO(name << " " << dtype_name(dtype) << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("binary ops: CUDA matches CPU with broadcasting and strided inputs", "[cuda][elementwise]") {
  const std::pair<const char*, Binary> ops[] = {{"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}, {"pow", pow}};
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f] : ops) {
      const uint64_t seed = fresh_seed();
      Tensor a = random_tensor({5, 33, 17}, seed, DType::f32, 0.5, 2.0).set_requires_grad(true);
      Tensor b = random_tensor({1, 33}, seed + 1, DType::f32, 0.5, 2.0).set_requires_grad(true);
      std::string report;
      const double error = compare_cuda_to_cpu(
          [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(transpose(in[0], 0, 2), transpose(in[1], 0, 1))}; },
          {a, b}, dtype, &report);
      INFO(name << " " << dtype_name(dtype) << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

// The contiguous kernels (8 elements per thread, 16-byte accesses when aligned, the tail one by one) must
// give the strided kernel's bits: the same inputs held contiguously and aligned, contiguously one element
// into an allocation (not 16-byte aligned), and with stride 2 (the strided kernel); 1003 elements, not a
// multiple of 8.
TEST_CASE("contiguous and strided elementwise kernels give the same bits, aligned or not", "[cuda][elementwise]") {
  const int64_t n = 1003;
  const Device gpu = Device::cuda(0);
  NoGradGuard no_grad;
  for (DType dtype : {DType::f32, DType::bf16, DType::f64}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    const std::vector<Tensor> a = aligned_offset_strided(random_tensor({n}, seed, dtype, 0.5, 2.0), gpu);
    const std::vector<Tensor> b = aligned_offset_strided(random_tensor({n}, seed + 1, dtype, 0.5, 2.0), gpu);
    for (const auto& [name, f] : std::initializer_list<std::pair<const char*, Unary>>{
             {"neg", neg}, {"exp", exp}, {"silu", silu}, {"sigmoid", sigmoid}, {"rsqrt", rsqrt}}) {
      INFO(name);
      const Tensor reference = f(a[2]);
      CHECK(same_bits(f(a[0]), reference));
      CHECK(same_bits(f(a[1]), reference));
    }
    for (const auto& [name, f] :
         std::initializer_list<std::pair<const char*, Binary>>{{"add", add}, {"mul", mul}, {"div", div}}) {
      INFO(name);
      const Tensor reference = f(a[2], b[2]);
      CHECK(same_bits(f(a[0], b[0]), reference));
      CHECK(same_bits(f(a[1], b[1]), reference));
      CHECK(same_bits(f(a[0], b[1]), reference));
    }
  }
}

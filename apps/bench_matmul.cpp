// bench_matmul: throughput of the cuBLAS GEMM path (mgl::matmul on CUDA tensors) in TFLOP/s, for
// square sizes and the projection shapes of a 1.3B MEGALODON layer (8192 tokens, D = 2048, FFN
// hidden 4864), in bf16 and f32 (f32 without TF32, so its ceiling is the plain FP32 rate).
//
// Each size is warmed up once, then run back to back `iterations` times between two
// synchronisations: the host clock then measures device time, with launch latency hidden behind
// the queue. A product is 2 m n k floating-point operations.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "apps/lib/command_line.h"
#include "autograd/grad_mode.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "ops/ops.h"

namespace {

struct Size {
  const char* what;
  int64_t m, n, k;
};

// Seconds per product, averaged over enough products to take about a quarter of a second.
double seconds_per_product(const mgl::Tensor& a, const mgl::Tensor& b, double flops) {
  const mgl::Device device = a.device();
  mgl::matmul(a, b);  // warm-up: cuBLAS handle, heuristics, memory pool
  mgl::synchronize(device);
  const int iterations = static_cast<int>(std::clamp(0.25 / (flops / 400e12), 3.0, 500.0));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) mgl::matmul(a, b);
  mgl::synchronize(device);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_matmul: throughput of the cuBLAS GEMM path in TFLOP/s"};  // no options: --help only
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_matmul")) return *status;
  using namespace mgl;
  if (!cuda_available()) {
    std::printf("bench_matmul: no usable GPU (%s); nothing to measure.\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  NoGradGuard no_grad;
  const Device device = Device::cuda(0);
  const Size sizes[] = {
      {"square", 1024, 1024, 1024},      {"square", 4096, 4096, 4096},      {"square", 8192, 8192, 8192},
      {"D -> D", 8192, 2048, 2048},      {"D -> FFN", 8192, 4864, 2048},    {"FFN -> D", 8192, 2048, 4864},
  };
  std::printf("%-5s %-9s %6s %6s %6s %10s %9s\n", "dtype", "shape", "m", "n", "k", "ms", "TFLOP/s");
  for (DType dtype : {DType::bf16, DType::f32}) {
    for (const Size& s : sizes) {
      const Tensor a = randn({s.m, s.k}, dtype, device), b = randn({s.k, s.n}, dtype, device);
      const double flops = 2.0 * s.m * s.n * s.k;
      const double seconds = seconds_per_product(a, b, flops);
      std::printf("%-5s %-9s %6lld %6lld %6lld %10.3f %9.1f\n", dtype_name(dtype), s.what, static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), seconds * 1e3, flops / seconds / 1e12);
    }
  }
  return 0;
}

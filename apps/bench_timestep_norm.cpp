// Benchmark of TimestepNorm on CUDA: forward and forward + backward for B = 1, D = 1024, G = 32 and
// L = 4096, 32768, in f32 and bf16. Prints the time per call and the bandwidth it implies for two byte
// counts: the least any implementation must move (forward: read x, write y; backward: read x and
// dy, write dx), and what these kernels move (each pass of the scans reads x once more: forward 3,
// backward 5 tensors of B*L*D; the per-step statistics are G/D of that and are left out).
// Without a GPU it says so and exits with status 0.
#include <chrono>
#include <cstdio>
#include <functional>

#include "apps/lib/command_line.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "ops/ops.h"
#include "ops/timestep_norm.h"

using namespace mgl;

namespace {

// Mean seconds per call of f over `iterations` calls, after warm-up calls.
double seconds_per_call(const Device& device, int iterations, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) f();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_timestep_norm: TimestepNorm on CUDA, forward and forward + backward"};  // no options: --help only
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_timestep_norm")) return *status;
  if (!cuda_available()) {
    std::printf("bench_timestep_norm: no usable GPU (%s); nothing to measure\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  const Device gpu = Device::cuda(0);
  const int64_t B = 1, D = 1024, G = 32;
  const int iterations = 20;
  std::printf("TimestepNorm, B = %lld, D = %lld, G = %lld, on %s\n", static_cast<long long>(B),
              static_cast<long long>(D), static_cast<long long>(G), gpu.str().c_str());
  std::printf("%-5s %7s %-9s %10s %14s %14s\n", "dtype", "L", "pass", "time (us)", "GB/s (least)", "GB/s (moved)");
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t L : {int64_t{4096}, int64_t{32768}}) {
      Generator gen(1234);
      Tensor x = randn({B, L, D}, dtype, gpu, gen).set_requires_grad(true);
      Tensor weight = mul(randn({D}, dtype, gpu, gen), 0.1).detach().set_requires_grad(true);
      Tensor bias = mul(randn({D}, dtype, gpu, gen), 0.1).detach().set_requires_grad(true);
      const Tensor dy = randn({B, L, D}, dtype, gpu, gen);
      // Drop x's gradient once computed: this measures the op, not the accumulation into x.grad.
      autograd::register_hook(x, [](const Tensor&) { return Tensor(); });

      const double forward = seconds_per_call(gpu, iterations, [&] {
        NoGradGuard no_grad;
        timestep_norm(x, weight, bias, G, nullptr);
      });
      const double both = seconds_per_call(gpu, iterations, [&] {
        const TimestepNormOutput out = timestep_norm(x, weight, bias, G, nullptr);
        backward(out.y, dy);
      });
      const double tensor_bytes = static_cast<double>(B * L * D) * static_cast<double>(dtype_size(dtype));
      auto line = [&](const char* pass, double seconds, double least, double moved) {
        std::printf("%-5s %7lld %-9s %10.1f %14.0f %14.0f\n", dtype_name(dtype), static_cast<long long>(L), pass,
                    seconds * 1e6, least * tensor_bytes / seconds / 1e9, moved * tensor_bytes / seconds / 1e9);
      };
      line("forward", forward, 2, 3);
      line("backward", both - forward, 3, 5);
      line("fwd+bwd", both, 5, 8);
    }
  }
  return 0;
}

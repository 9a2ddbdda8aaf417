// bench_cema: time of the CEMA op (ops/cema.h) on CUDA, forward and forward + backward, for
// B = 1, D = 1024, N = 16 and L = 4096 and 32768, with f32 and bf16 activations.
//
// Each time is set against two floors (docs/perf.md, "CEMA: the plan to reach its floors"), printed as
// the fraction floor ÷ measured (1 = at the floor):
// - bytes: the activations the op cannot avoid moving over 4.8 TB/s (an H200): the forward reads x and
//   writes y (2 activations); forward + backward also reads x and dy and writes dx (5 in all). The chunked
//   scan moves more (chunk states, x read again);
// - arithmetic: B·D·N·L complex multiply-adds per pass over the sequence, 4 real FMAs each, over 30 T f32
//   FMAs/s (an H100 or H200 at ~60 TFLOP/s): one pass for the forward (the recurrence with its output), four
//   for forward + backward (the backward's forward states again, the adjoint, the products of G_q).
// --dtype and --length pick one setting (e.g. to profile its kernels under ncu), --iterations the timed runs.
// Exits with status 0 and a message when no GPU is present.
#include <cstdio>
#include <string>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/timing.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "ops/cema.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

constexpr int64_t kBatch = 1, kChannels = 1024, kModes = 16;
constexpr int kWarmup = 3;
constexpr double kBytesPerMs = 4.8e9, kFmasPerMs = 30e9;  // the floors' device rates
constexpr double kForwardPasses = 1, kTotalPasses = 4;

struct Problem {
  Tensor x, alpha, delta, theta, gamma, omega, h_in, dy, dh;
};

Problem make_problem(int64_t L, DType dtype, const Device& device) {
  Generator gen(2024);
  auto uniform = [&](const Shape& shape, double low, double high, DType type, bool grad) {
    Tensor t = Tensor::empty(shape, type, device);
    uniform_(t, low, high, gen);
    return grad ? t.set_requires_grad(true) : t;
  };
  const int64_t B = kBatch, D = kChannels, N = kModes;
  return {uniform({B, L, D}, -1, 1, dtype, true),        uniform({D, N, 1}, -1.5, 1.5, DType::f32, true),
          uniform({D, N, 1}, -1.5, 1.5, DType::f32, true), uniform({D, 1, 1}, -2, 2, DType::f32, true),
          uniform({D, N, 2}, -1, 1, DType::f32, true),     uniform({D, 1}, -1, 1, DType::f32, true),
          uniform({B, D, N, 2}, -1, 1, DType::f32, true),  uniform({B, L, D}, -1, 1, dtype, false),
          uniform({B, D, N, 2}, -1, 1, DType::f32, false)};
}


}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_cema: time of the CEMA op on CUDA, forward and forward + backward"};
  std::vector<std::string> dtypes{"f32", "bf16"};
  std::vector<int64_t> lengths{4096, 32768};
  int iterations = 20;
  app.add_option("--dtype", dtypes, "activation dtypes")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--length", lengths, "sequence lengths L")->check(mgl::apps::integer_in(1, kMaxSize));
  app.add_option("--iterations", iterations, "timed runs of each setting (after 3 untimed)")
      ->check(mgl::apps::integer_in(1, kMaxSize));
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_cema")) return *status;
  if (!cuda_available()) {
    std::printf("bench_cema: no usable GPU (%s); nothing to measure.\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  const Device device = Device::cuda(0);
  std::printf("CEMA on %s: B = %ld, D = %ld, N = %ld; %d timed iterations\n", device.str().c_str(), long(kBatch),
              long(kChannels), long(kModes), iterations);
  std::printf("%-5s %7s %9s %9s %11s %9s %12s %9s %11s %9s\n", "dtype", "L", "fwd ms", "GB/s", "of bytes", "of FMAs",
              "fwd+bwd ms", "GB/s", "of bytes", "of FMAs");
  for (const std::string& dtype_text : dtypes) {
    const DType dtype = dtype_text == "bf16" ? DType::bf16 : DType::f32;
    for (int64_t L : lengths) {
      Problem p = make_problem(L, dtype, device);
      auto forward = [&] { return cema(p.x, p.alpha, p.delta, p.theta, p.gamma, p.omega, p.h_in, true); };
      const double forward_ms = apps::mean_ms(device, kWarmup, iterations, [&] {
        NoGradGuard no_grad;
        forward();
      });
      const double total_ms = apps::mean_ms(device, kWarmup, iterations, [&] {
        const CemaOutput out = forward();
        autograd::backward({out.y, out.h_out}, {p.dy, p.dh});
      });
      const double activation_bytes = double(kBatch * L * kChannels) * double(dtype_size(dtype));
      const double pass_fmas = 4.0 * double(kBatch * kChannels * kModes * L);
      std::printf("%-5s %7ld %9.3f %9.1f %11.3f %9.3f %12.3f %9.1f %11.3f %9.3f\n", dtype_name(dtype), long(L),
                  forward_ms, 2 * activation_bytes / forward_ms * 1e-6, 2 * activation_bytes / kBytesPerMs / forward_ms,
                  kForwardPasses * pass_fmas / kFmasPerMs / forward_ms, total_ms,
                  5 * activation_bytes / total_ms * 1e-6, 5 * activation_bytes / kBytesPerMs / total_ms,
                  kTotalPasses * pass_fmas / kFmasPerMs / total_ms);
    }
  }
  return 0;
}

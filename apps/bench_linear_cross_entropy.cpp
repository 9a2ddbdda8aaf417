// bench_linear_cross_entropy: the LM head and its loss on CUDA, as the training step ran them before the fused
// op and as linear_cross_entropy (ops/linear_cross_entropy.cpp) runs them, by default at the head of the 125M
// benchmark step (bench_train, docs/perf.md): N = 32768 tokens (8 x 4096), D = 768, V = 32000, bf16 x and W.
//   unfused: logits = linear(x, W) in bf16, cast to f32, cross_entropy (the backward through all three);
//   fused:   linear_cross_entropy(x, W, {}, targets).
// For each: the forward under NoGradGuard (evaluation) and forward + backward (training), ms per call, and the
// peak memory of forward + backward above what was allocated before it (the inputs; core/allocator.h's
// high-water mark, the allocator's own bytes). Both do the same GEMMs, 6 N V D FLOPs in training; the
// difference is the passes over the [N, V] logits. The targets are on the host, as a training batch's are.
// --rows, --features, --vocab and --dtype set the problem, --iterations the timed calls (after 2 untimed).
// Exits with status 0 and a message when no GPU is present.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "apps/lib/command_line.h"
#include "apps/lib/timing.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

constexpr int kWarmup = 2;

struct Timing {
  double eval_ms = 0, train_ms = 0, peak_mib = 0;
};

// `loss(x, w)` timed under NoGradGuard, then with its backward, whose peak memory is measured over one call.
Timing measure(const Device& device, int iterations, const Tensor& x, const Tensor& w,
               const std::function<Tensor(const Tensor&, const Tensor&)>& loss) {
  Timing t;
  t.eval_ms = apps::mean_ms(device, kWarmup, iterations, [&] {
    NoGradGuard no_grad;
    loss(x, w);
  });
  auto train = [&] { backward(loss(x, w)); };
  t.train_ms = apps::mean_ms(device, kWarmup, iterations, train);
  const int64_t before = memory_stats(device).current_bytes;
  reset_peak_memory(device);
  train();
  synchronize(device);
  t.peak_mib = static_cast<double>(memory_stats(device).peak_bytes - before) / (1 << 20);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_linear_cross_entropy: the LM head and loss, unfused and fused (linear_cross_entropy)"};
  int64_t rows = 32768, features = 768, vocab = 32000;
  std::string dtype_text = "bf16";
  int iterations = 10;
  app.add_option("--rows", rows, "tokens N")->check(mgl::apps::integer_in(1, kMaxSize));
  app.add_option("--features", features, "model dim D")->check(mgl::apps::integer_in(1, kMaxSize));
  app.add_option("--vocab", vocab, "vocabulary V")->check(mgl::apps::integer_in(1, kMaxSize));
  app.add_option("--dtype", dtype_text, "dtype of x and W")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--iterations", iterations, "timed calls of each (after 2 untimed)")
      ->check(mgl::apps::integer_in(1, kMaxSize));
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_linear_cross_entropy")) return *status;
  if (!cuda_available()) {
    std::printf("bench_linear_cross_entropy: no usable GPU (%s); nothing to measure.\n",
                cuda_unavailable_reason().c_str());
    return 0;
  }
  try {
    const Device device = Device::cuda(0);
    const DType dtype = dtype_text == "bf16" ? DType::bf16 : DType::f32;
    Generator gen(2024);
    Tensor x = Tensor::empty({rows, features}, dtype, device), w = Tensor::empty({vocab, features}, dtype, device);
    normal_(x, 0.0, 1.0, gen);  // the final norm's output
    normal_(w, 0.0, 1.0 / std::sqrt(static_cast<double>(features)), gen);  // the head's initialisation (§2.7)
    x.set_requires_grad(true);
    w.set_requires_grad(true);
    // Drop the leaves' gradients once computed: this measures the head, not the accumulation into .grad.
    for (const Tensor& leaf : {x, w}) autograd::register_hook(leaf, [](const Tensor&) { return Tensor(); });
    const Tensor u = rand({rows}, DType::f64, Device::cpu(), gen);
    const Tensor targets = cast(mul(u, static_cast<double>(vocab) - 0.5), DType::i64);  // in [0, V)

    const Timing unfused = measure(device, iterations, x, w, [&](const Tensor& a, const Tensor& b) {
      return cross_entropy(cast(linear(a, b), DType::f32), targets);
    });
    const Timing fused = measure(device, iterations, x, w, [&](const Tensor& a, const Tensor& b) {
      return linear_cross_entropy(a, b, Tensor(), targets);
    });
    const double train_tflop = 6.0 * double(rows) * double(vocab) * double(features) * 1e-12;
    std::printf("LM head + cross-entropy on %s: N = %lld, D = %lld, V = %lld, %s; %d timed calls\n",
                device.str().c_str(), static_cast<long long>(rows), static_cast<long long>(features),
                static_cast<long long>(vocab), dtype_name(dtype), iterations);
    std::printf("| path | forward ms (no grad) | forward + backward ms | TFLOP/s (fwd+bwd) | peak MiB above inputs |\n");
    std::printf("|---|---|---|---|---|\n");
    for (const auto& [name, t] : {std::pair{"unfused", unfused}, std::pair{"fused", fused}})
      std::printf("| %s | %.3f | %.3f | %.1f | %.0f |\n", name, t.eval_ms, t.train_ms, train_tflop / (t.train_ms * 1e-3),
                  t.peak_mib);
    std::printf("fused / unfused: forward %.3f, forward + backward %.3f, peak memory %.3f\n",
                fused.eval_ms / unfused.eval_ms, fused.train_ms / unfused.train_ms, fused.peak_mib / unfused.peak_mib);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_linear_cross_entropy: %s\n", e.what());
    return 1;
  }
  return 0;
}

// bench_megalodon_block: forward and forward + backward time of one mega200M block (docs/megalodon.md
// §4.1: D 1024, Z 256, V 2048, F 2560, H 1, N 16, G 32, chunk 2048) on CUDA, at 4K and 32K tokens, in bf16
// mixed precision (f32 parameters, bf16 activations), with the time of its three custom ops
// (TimestepNorm, CEMA, chunk attention) measured alone at the same shapes, so the remainder is the
// GEMMs, norms and elementwise work.
//
//   build/bin/bench_megalodon_block [--dtype bf16|f32]
//
// Exits with status 0 and a message when no GPU is present.
#include <cstdio>
#include <vector>
#include <string>

#include "apps/lib/command_line.h"
#include "apps/lib/timing.h"
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "nn/megalodon.h"
#include "ops/chunk_attention.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

constexpr int kWarmup = 2, kIterations = 10;

// Average milliseconds of `step` over kIterations, after kWarmup untimed runs.
template <class F>
double time_ms(const Device& device, F&& step) {
  return apps::mean_ms(device, kWarmup, kIterations, step);
}

Tensor random_activation(const Shape& shape, DType dtype, const Device& device, Generator& gen, bool grad) {
  Tensor t = Tensor::empty(shape, dtype, device);
  uniform_(t, -1.0, 1.0, gen);
  return grad ? t.set_requires_grad(true) : t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_megalodon_block: one mega200M block on CUDA, forward and forward + backward"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::string dtype_text = "bf16";
  app.add_option("--dtype", dtype_text, "activation dtype")->check(CLI::IsMember({"bf16", "f32"}));
  std::vector<int64_t> lengths{4096, 32768};
  app.add_option("--length", lengths, "sequence lengths L (one, e.g. to profile its kernels under ncu)")
      ->check(mgl::apps::integer_in(1, kMaxSize));
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_megalodon_block")) return *status;
  const DType dtype = dtype_from_name(dtype_text);
  if (!cuda_available()) {
    std::printf("bench_megalodon_block: no GPU (%s)\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  const Device gpu = Device::cuda(0);
  const nn::MegalodonConfig config = nn::MegalodonConfig::preset("mega200M");
  nn::InitOptions options;
  options.device = gpu;
  nn::MegalodonBlock block(config, 0, options);
  int64_t parameters = 0;
  for (const nn::Parameter& p : block.named_parameters()) parameters += p.tensor.numel();
  std::printf("one mega200M block (%lld parameters) on %s, %s activations, B = 1\n",
              static_cast<long long>(parameters), gpu.str().c_str(), dtype_name(dtype));
  std::printf("%6s %12s %12s %10s | fwd+bwd ms of: %10s %8s %10s %8s\n", "L", "fwd ms", "fwd+bwd ms", "tokens/s",
              "tsnorm", "cema", "attention", "rest");

  Generator gen(7);
  for (int64_t L : lengths) {
    const int64_t D = config.model_dim, H = config.num_heads;
    const Tensor x = random_activation({1, L, D}, dtype, gpu, gen, true);
    const Tensor dy = random_activation({1, L, D}, dtype, gpu, gen, false);
    reset_peak_memory(gpu);
    const double forward = time_ms(gpu, [&] {
      NoGradGuard no_grad;
      block.forward(x);
    });
    const double training = time_ms(gpu, [&] {
      backward(block.forward(x), dy);
      block.zero_grad();
    });
    const double peak_gib = memory_stats(gpu).peak_bytes / double(1 << 30);

    // The custom ops alone, forward + backward, at the block's shapes.
    const Tensor w = Tensor::zeros({D}, dtype, gpu).set_requires_grad(true);
    const Tensor b = Tensor::zeros({D}, dtype, gpu).set_requires_grad(true);
    const double tsnorm = time_ms(gpu, [&] {
      backward(timestep_norm(x, w, b, config.norm_num_groups, nullptr, config.norm_eps).y, dy);
    });
    nn::Cema cema_layer(D, config.cema_ndim, options);
    const double cema = time_ms(gpu, [&] { backward(cema_layer.forward(x), dy); });
    const Tensor q = random_activation({1, L, H, config.head_z_dim()}, dtype, gpu, gen, true);
    const Tensor k = random_activation({1, L, H, config.head_z_dim()}, dtype, gpu, gen, true);
    const Tensor v = random_activation({1, L, H, config.head_value_dim()}, dtype, gpu, gen, true);
    const Tensor dout = random_activation({1, L, H, config.head_value_dim()}, dtype, gpu, gen, false);
    const double attention = time_ms(gpu, [&] { backward(chunk_attention(q, k, v, config.chunk_size), dout); });

    std::printf("%6lld %12.3f %12.3f %10.0f | %25.3f %8.3f %10.3f %8.3f   (peak %.2f GiB)\n",
                static_cast<long long>(L), forward, training, L / (training * 1e-3), tsnorm, cema, attention,
                training - tsnorm - cema - attention, peak_gib);
  }
  return 0;
}

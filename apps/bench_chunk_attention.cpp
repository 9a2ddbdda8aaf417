// Benchmark of the chunk-attention kernels at mega200M's attention shape: B = 1, H = 1, c = 2048,
// dz = 256, dv = 2048, bf16 on CUDA, L = 4096 and 32768. Prints the time per call and the achieved
// TFLOP/s of the forward and of forward + backward.
//
// FLOP count (model FLOPs of the causal problem, 2 per multiply-add, half of each c x c product):
//   forward  = 2 · (c²/2) · (dz + dv)    per chunk      (S = Q Kᵀ and O = P V)
//   backward = 2 · (c²/2) · (3dz + 2dv)  per chunk      (S again, dP = dO Vᵀ, dV = Pᵀ dO, dQ = dS K, dK = dSᵀ Q)
// With dz = dv = d the forward is FlashAttention's 4·c²·d/2. Work the GEMMs add on top is not
// counted: they cover the causal triangle with rectangles of 256 query rows, (n + 1)/n of it for
// n = c / 256 tiles (cuda/chunk_attention.cu), so at c = 2048 the tensor cores run 1.125x the printed
// rate. The peak memory includes the pass's scratch tiles (score and probability tiles of a group of
// chunks, at most ~256 MiB).
#include <chrono>
#include <cstdio>

#include "apps/lib/command_line.h"
#include "autograd/engine.h"
#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "ops/chunk_attention.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

constexpr int64_t kChunk = 2048, kDz = 256, kDv = 2048;

// Mean seconds per call of `work` over `iterations` calls, after two warm-up calls.
template <class F>
double seconds_per_call(const Device& device, int iterations, F&& work) {
  for (int i = 0; i < 2; ++i) work();
  synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) work();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / iterations;
}

void bench(int64_t length) {
  const Device device = Device::cuda(0);
  Generator gen(42);
  // q and k with unit-norm-like rows (MEGALODON normalises them), v standard normal.
  Tensor q = randn({1, length, 1, kDz}, DType::bf16, device, gen);
  Tensor k = randn({1, length, 1, kDz}, DType::bf16, device, gen);
  Tensor v = randn({1, length, 1, kDv}, DType::bf16, device, gen);
  const Tensor grad = randn({1, length, 1, kDv}, DType::bf16, device, gen);
  const AttentionOptions options{.scale = 1.0 / 16.0};  // 1 / sqrt(dz): q.k of unit-variance entries

  const double chunks = static_cast<double>(length / kChunk), half_square = 0.5 * kChunk * kChunk;
  const double forward_flops = chunks * 2.0 * half_square * (kDz + kDv);
  const double backward_flops = chunks * 2.0 * half_square * (3 * kDz + 2 * kDv);

  const double forward_s = seconds_per_call(device, 10, [&] { chunk_attention(q, k, v, kChunk, options); });
  q.set_requires_grad(true);
  k.set_requires_grad(true);
  v.set_requires_grad(true);
  reset_peak_memory(device);
  const double training_s = seconds_per_call(device, 5, [&] {
    backward(chunk_attention(q, k, v, kChunk, options), grad);
  });
  std::printf("L = %6lld  forward %8.3f ms  %6.1f TFLOP/s   forward+backward %8.3f ms  %6.1f TFLOP/s   peak %.0f MiB\n",
              static_cast<long long>(length), forward_s * 1e3, forward_flops / forward_s * 1e-12, training_s * 1e3,
              (forward_flops + backward_flops) / training_s * 1e-12,
              static_cast<double>(memory_stats(device).peak_bytes) / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_chunk_attention: the chunk-attention kernels at mega200M's attention shape"};  // no options: --help only
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "bench_chunk_attention")) return *status;
  if (!cuda_available()) {
    std::printf("bench_chunk_attention: no usable GPU (%s); nothing to measure\n", cuda_unavailable_reason().c_str());
    return 0;
  }
  try {
    std::printf("chunk attention, bf16, B = 1, H = 1, c = %lld, dz = %lld, dv = %lld\n", static_cast<long long>(kChunk),
                static_cast<long long>(kDz), static_cast<long long>(kDv));
    for (int64_t length : {4096, 32768}) bench(length);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_chunk_attention: %s\n", e.what());
    return 1;
  }
  return 0;
}

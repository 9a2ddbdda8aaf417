// Chunk attention on CUDA against the CPU reference, forward and backward (dq, dk, dv), f32 and bf16.
// The reference runs in f64: rows of up to 2048 keys make the f32 CPU loop's own summation-order
// error comparable to the 1e-5 budget, so the comparison measures the kernels' error alone.
#include <cmath>

#include "autograd/engine.h"
#include "ops/chunk_attention.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

// q, k, v uniform in [-1, 1). With scale = 4 / sqrt(dz) (attention_scale) the logits have a standard
// deviation of about 1.3 for every dz: neither uniform nor one-hot attention.
std::vector<Tensor> random_qkv(uint64_t seed, int64_t B, int64_t n, int64_t m, int64_t H, int64_t dz, int64_t dv) {
  return {random_tensor({B, n, H, dz}, seed, DType::f32).set_requires_grad(true),
          random_tensor({B, m, H, dz}, seed + 1, DType::f32).set_requires_grad(true),
          random_tensor({B, m, H, dv}, seed + 2, DType::f32).set_requires_grad(true)};
}
double attention_scale(int64_t dz) { return 4.0 / std::sqrt(static_cast<double>(dz)); }

void check_against_cpu(const autograd::MultiFunction& f, const std::vector<Tensor>& inputs, const std::string& what) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    std::string report;
    const double error = compare_cuda_to_cpu(f, inputs, dtype, &report, DType::f64);
    INFO(what << " " << dtype_name(dtype) << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

}  // namespace

TEST_CASE("chunk_attention: CUDA matches CPU", "[cuda][chunk_attention]") {
  struct Case {
    int64_t B, L, H, chunk, dz, dv;
  };
  // Chunk sizes 1, 37, 128, 2048 (full and partial), q/k head dims 64, 128, 256, value dims 64 and
  // 2048, and sizes that are not multiples of the 64-row tiles or of the value slices. bf16 runs on
  // tensor cores when both head dims are multiples of 8 (dz = 40: a partial 64-wide slab), and on
  // the FMA kernels otherwise (dv = 70).
  const Case cases[] = {
      {2, 5, 3, 1, 64, 64},         {2, 74, 2, 37, 64, 2048},     {1, 111, 2, 37, 256, 96},
      {1, 130, 2, 65, 128, 200},    {1, 200, 1, 100, 40, 136},    {1, 150, 2, 75, 72, 70},
      {1, 256, 2, 128, 256, 2048},  {1, 2048, 1, 2048, 256, 64},  {1, 2048, 1, 2048, 64, 2048},
      {2, 100, 1, 2048, 256, 2048},
  };
  for (const Case& c : cases) {
    const uint64_t seed = fresh_seed();
    std::vector<Tensor> inputs = random_qkv(seed, c.B, c.L, c.L, c.H, c.dz, c.dv);
    if (c.chunk == 1) {
      // Each query sees only itself: P = 1 whatever q and k are, so their exact gradients are 0 and
      // a relative error would compare rounding noise with rounding noise. Only v is compared.
      inputs[0] = inputs[0].detach();
      inputs[1] = inputs[1].detach();
    }
    const int64_t chunk = c.chunk;
    const double scale = attention_scale(c.dz);
    check_against_cpu(
        [chunk, scale](const std::vector<Tensor>& x) {
          return std::vector<Tensor>{chunk_attention(x[0], x[1], x[2], chunk, {.scale = scale})};
        },
        inputs,
        "B " + std::to_string(c.B) + " L " + std::to_string(c.L) + " H " + std::to_string(c.H) + " chunk " +
            std::to_string(c.chunk) + " dz " + std::to_string(c.dz) + " dv " + std::to_string(c.dv) + " seed " +
            std::to_string(seed));
  }
}

TEST_CASE("chunk_attention: CUDA KV-cache form matches CPU", "[cuda][chunk_attention]") {
  // (n queries, m keys): a decoding step late in a chunk, a few tokens after a cache, no cache, the
  // second token of a chunk. (With a single key the probabilities are exactly 1 and dQ, dK are zero
  // in exact arithmetic: only rounding noise is left to compare, so m = 1 is checked separately.)
  for (const auto& [n, m] : {std::pair<int64_t, int64_t>{1, 2047}, {7, 300}, {70, 70}, {1, 2}}) {
    const uint64_t seed = fresh_seed();
    const std::vector<Tensor> inputs = random_qkv(seed, 2, n, m, 2, 256, 2048);
    check_against_cpu(
        [](const std::vector<Tensor>& x) {
          return std::vector<Tensor>{chunk_attention_cached(x[0], x[1], x[2], {.scale = attention_scale(256)})};
        },
        inputs, "n " + std::to_string(n) + " m " + std::to_string(m) + " seed " + std::to_string(seed));
  }
}

TEST_CASE("chunk_attention: CUDA with a single key copies the value and passes no gradient to q, k",
          "[cuda][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::vector<Tensor> inputs = random_qkv(seed, 2, 1, 1, 2, 256, 2048);
  for (Tensor& t : inputs) t = to(t, Device::cuda(0)).detach().set_requires_grad(true);
  const Tensor o = chunk_attention_cached(inputs[0], inputs[1], inputs[2], {.scale = attention_scale(256)});
  CHECK(relative_error(o, inputs[2]) == 0.0);
  const Tensor w = to(random_tensor(o.shape(), seed + 7, DType::f32), Device::cuda(0));
  backward(o, w);
  CHECK(relative_error(inputs[2].grad(), w) == 0.0);
  // dQ and dK are rounding noise around zero: small against the scale of the incoming gradient.
  const double scale = std::sqrt(sum(mul(w, w)).item());
  CHECK(std::sqrt(sum(mul(inputs[0].grad(), inputs[0].grad())).item()) <= 1e-5 * scale);
  CHECK(std::sqrt(sum(mul(inputs[1].grad(), inputs[1].grad())).item()) <= 1e-5 * scale);
}

TEST_CASE("chunk_attention: CUDA dropout uses the same mask as the CPU", "[cuda][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  const std::vector<Tensor> inputs = random_qkv(seed, 2, 150, 150, 2, 64, 80);
  check_against_cpu(
      [seed](const std::vector<Tensor>& x) {
        Generator gen(seed + 5);  // the same stream on both devices
        return std::vector<Tensor>{
            chunk_attention(x[0], x[1], x[2], 75, {.scale = attention_scale(64), .dropout = 0.25, .generator = &gen})};
      },
      inputs, "dropout, seed " + std::to_string(seed));
}

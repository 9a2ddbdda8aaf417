// Chunk attention on CUDA against the CPU reference, forward and backward (dq, dk, dv), f32 and bf16.
// The reference runs in f64: rows of up to 2048 keys make the f32 CPU loop's own summation-order
// error comparable to the 1e-5 budget, so the comparison measures the kernels' error alone. In bf16
// the GEMMs multiply P̃ and dS rounded to bf16 (relative 2^-9 per entry, as the outputs' own rounding)
// with f32 accumulation, so the error stays at a few 1e-3 against the 1e-2 bound; f32 runs exact f32
// GEMMs (no TF32).
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
  // Chunk sizes 1, 37, 128, 2048 (full and partial), q/k head dims 64, 128, 256, 320 and ones that
  // are no multiple of 8 (unaligned rows for the GEMMs and the packed loads), value dims 64 to 2048.
  // Against the 256-query row tiles: chunks of one tile, exactly one (256), one and a bit (257, 300:
  // a last tile of 1 and of 44 rows), two and one row (513), eight (2048), with heads > 1 among them.
  const Case cases[] = {
      {2, 5, 3, 1, 64, 64},          {2, 74, 2, 37, 64, 2048},     {1, 111, 2, 37, 256, 96},
      {1, 130, 2, 65, 128, 200},     {1, 200, 1, 100, 40, 136},    {1, 150, 2, 75, 72, 70},
      {1, 256, 2, 128, 256, 2048},   {1, 2048, 1, 2048, 256, 64},  {1, 2048, 1, 2048, 64, 2048},
      {2, 100, 1, 2048, 256, 2048},  {1, 512, 2, 256, 64, 96},     {2, 514, 3, 257, 36, 50},
      {1, 600, 2, 300, 256, 264},    {1, 1026, 1, 513, 128, 136},  {1, 300, 1, 300, 320, 40},
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
  // (n queries, m keys): a decoding step late in a chunk, a few tokens after a cache, no cache, a
  // short cache; prefills over a cache that span row tiles (the first key tile then holds the whole
  // cache plus 256 keys: 656 of 700, 343 of 600). (With a single key the probabilities are exactly
  // 1 and dQ, dK are zero in exact arithmetic: only rounding noise is left to compare, so m = 1 is
  // checked separately.)
  for (const auto& [n, m] :
       {std::pair<int64_t, int64_t>{1, 2047}, {7, 300}, {70, 70}, {3, 40}, {300, 700}, {513, 600}}) {
    const uint64_t seed = fresh_seed();
    const std::vector<Tensor> inputs = random_qkv(seed, 2, n, m, 2, 256, 2048);
    check_against_cpu(
        [](const std::vector<Tensor>& x) {
          return std::vector<Tensor>{chunk_attention_cached(x[0], x[1], x[2], {.scale = attention_scale(256)})};
        },
        inputs, "n " + std::to_string(n) + " m " + std::to_string(m) + " seed " + std::to_string(seed));
  }
}

TEST_CASE("chunk_attention: CUDA matches CPU when the blocks take more than one scratch group",
          "[cuda][chunk_attention]") {
  // The backward keeps P̃ and dS of whole blocks (c · c entries each) in a workspace of ~256 MiB
  // (cuda/chunk_attention.cu): with c = 2048 that is 7 blocks at a time in f32 and 12 in bf16, so 13
  // blocks (batch 13 of one chunk) run as two groups of 7 and 6 in both dtypes, and each of the two
  // heads walks the groups again. Small head dims keep the CPU reference quick.
  const uint64_t seed = fresh_seed();
  const std::vector<Tensor> inputs = random_qkv(seed, 13, 2048, 2048, 2, 16, 24);
  check_against_cpu(
      [](const std::vector<Tensor>& x) {
        return std::vector<Tensor>{chunk_attention(x[0], x[1], x[2], 2048, {.scale = attention_scale(16)})};
      },
      inputs, "13 blocks of 2048, seed " + std::to_string(seed));
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
  // One row tile per chunk (75), and chunks of two tiles (300: the mask's indices past the first tile).
  for (const auto& [L, chunk] : {std::pair<int64_t, int64_t>{150, 75}, {600, 300}}) {
    const uint64_t seed = fresh_seed();
    const std::vector<Tensor> inputs = random_qkv(seed, 2, L, L, 2, 64, 80);
    const int64_t c = chunk;
    check_against_cpu(
        [seed, c](const std::vector<Tensor>& x) {
          Generator gen(seed + 5);  // the same stream on both devices
          return std::vector<Tensor>{
              chunk_attention(x[0], x[1], x[2], c, {.scale = attention_scale(64), .dropout = 0.25, .generator = &gen})};
        },
        inputs, "dropout, chunk " + std::to_string(chunk) + " seed " + std::to_string(seed));
  }
}

TEST_CASE("chunk_attention: CUDA DropKey uses the same mask as the CPU", "[cuda][chunk_attention]") {
  struct Case {
    int64_t B, n, m, H, chunk, dz, dv;  // chunk 0: the cached form (n queries, m keys)
    double p;
  };
  // p = 0.9 with chunks of 37 leaves many early queries of each chunk without a key (zero output and
  // gradient on both sides); the cached form with a long cache, and with queries over two row tiles;
  // chunks of two row tiles.
  const Case cases[] = {{2, 150, 150, 2, 75, 64, 80, 0.25},  {1, 74, 74, 2, 37, 40, 70, 0.9},
                        {2, 7, 300, 2, 0, 256, 200, 0.3},     {1, 300, 420, 2, 0, 64, 72, 0.3},
                        {1, 600, 600, 1, 300, 64, 96, 0.5}};
  for (const Case& c : cases) {
    const uint64_t seed = fresh_seed();
    const std::vector<Tensor> inputs = random_qkv(seed, c.B, c.n, c.m, c.H, c.dz, c.dv);
    const Case cc = c;
    check_against_cpu(
        [seed, cc](const std::vector<Tensor>& x) {
          Generator gen(seed + 5);  // the same stream on both devices
          const AttentionOptions options{.scale = attention_scale(cc.dz), .dropout = cc.p, .generator = &gen,
                                         .dropout_kind = AttentionDropout::keys};
          return std::vector<Tensor>{cc.chunk == 0 ? chunk_attention_cached(x[0], x[1], x[2], options)
                                                   : chunk_attention(x[0], x[1], x[2], cc.chunk, options)};
        },
        inputs,
        "DropKey B " + std::to_string(c.B) + " n " + std::to_string(c.n) + " m " + std::to_string(c.m) + " chunk " +
            std::to_string(c.chunk) + " dz " + std::to_string(c.dz) + " dv " + std::to_string(c.dv) + " p " +
            std::to_string(c.p) + " seed " + std::to_string(seed));
  }
}

TEST_CASE("chunk_attention: CUDA DropKey gives exact zeros for a query without keys", "[cuda][chunk_attention]") {
  // Chunk size 1 and p = 0.5: each query sees only its own key, so it either copies its value (P = 1)
  // or, with its key dropped, outputs 0 and passes no gradient (not NaN from a logsumexp of -inf).
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::vector<Tensor> inputs = random_qkv(seed, 2, 64, 64, 2, 64, 96);
  const Generator stream(seed + 3);
  auto run = [&](Device device) {
    std::vector<Tensor> x;
    for (const Tensor& t : inputs) x.push_back(to(t, device).detach().set_requires_grad(true));
    Generator gen = stream;
    const Tensor o = chunk_attention(x[0], x[1], x[2], 1,
                                     {.dropout = 0.5, .generator = &gen, .dropout_kind = AttentionDropout::keys});
    backward(o, to(random_tensor(o.shape(), seed + 7, DType::f32), device));
    return std::vector<Tensor>{to(o, Device::cpu()), to(x[2].grad(), Device::cpu())};
  };
  const std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
  // Every value is a copy of an input or 0, on both devices alike.
  CHECK(gpu[0].to_vector<double>() == cpu[0].to_vector<double>());
  CHECK(gpu[1].to_vector<double>() == cpu[1].to_vector<double>());
  int64_t zero_rows = 0;
  const std::vector<double> o = gpu[0].to_vector<double>();
  for (size_t row = 0; row < o.size() / 96; ++row) zero_rows += o[row * 96] == 0.0;
  CHECK(zero_rows > 0);
  CHECK(zero_rows < static_cast<int64_t>(o.size() / 96));
}

// Chunk attention on the CPU: values against a brute-force formula over global token indices,
// finite-difference gradients (f64) of q, k, v, the KV-cache form against the training form,
// causality and chunk independence, dropout and DropKey against their Philox masks and
// reproducibility, DropKey's fully dropped rows, and bad inputs.
#include <cmath>
#include <functional>

#include "autograd/engine.h"
#include "base/philox.h"
#include "ops/chunk_attention.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

// Brute force over global token indices: o_t = Σ_u softmax_u(scale q_t·k_u | visible(t, u), kept(t, u))
// drop(t, u) v_u, with q [B, n, H, dz], k [B, m, H, dz], v [B, m, H, dv]. `drop` returns the dropout
// multiplier; `kept` says whether DropKey left logit (t, u) in the softmax (-inf otherwise). A query
// with no logit left gets o_t = 0.
using Visible = std::function<bool(int64_t t, int64_t u)>;
using Drop = std::function<double(int64_t b, int64_t h, int64_t t, int64_t u)>;
using Kept = std::function<bool(int64_t b, int64_t h, int64_t t, int64_t u)>;
std::vector<double> brute_force(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Visible& visible,
                                const Drop& drop = nullptr, const Kept& kept = nullptr) {
  const int64_t B = q.size(0), n = q.size(1), m = k.size(1), H = q.size(2), dz = q.size(3), dv = v.size(3);
  const std::vector<double> Q = q.to_vector<double>(), K = k.to_vector<double>(), V = v.to_vector<double>();
  std::vector<double> O(B * n * H * dv, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < n; ++t) {
        std::vector<double> logits(m, -INFINITY);
        double max = -INFINITY;
        for (int64_t u = 0; u < m; ++u) {
          if (!visible(t, u) || (kept && !kept(b, h, t, u))) continue;
          double dot = 0.0;
          for (int64_t e = 0; e < dz; ++e) dot += Q[((b * n + t) * H + h) * dz + e] * K[((b * m + u) * H + h) * dz + e];
          logits[u] = scale * dot;
          max = std::max(max, logits[u]);
        }
        if (max == -INFINITY) continue;
        double sum = 0.0;
        for (int64_t u = 0; u < m; ++u) sum += std::exp(logits[u] - max);
        for (int64_t u = 0; u < m; ++u) {
          const double p = std::exp(logits[u] - max) / sum * (drop ? drop(b, h, t, u) : 1.0);
          for (int64_t c = 0; c < dv; ++c) O[((b * n + t) * H + h) * dv + c] += p * V[((b * m + u) * H + h) * dv + c];
        }
      }
  return O;
}

// Token t sees token u iff both are in the same chunk and u <= t.
Visible chunked_causal(int64_t chunk) {
  return [chunk](int64_t t, int64_t u) { return u <= t && u / chunk == t / chunk; };
}

double max_difference(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// Tokens [start, end) of a [B, L, H, d] tensor as a new contiguous tensor.
Tensor tokens(const Tensor& x, int64_t start, int64_t end) { return contiguous(slice(x, 1, start, end)); }

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// The documented mask indexing, over global token indices: block (b, chunk, h) = (b * chunks + chunk)
// * heads + h owns Philox indices (block * q_len + i) * k_len + j for its query i and key j; token t
// of q is query t % q_len of chunk t / q_len, token u of k is key u % k_len.
struct MaskIndexing {
  int64_t heads, chunks, q_len, k_len;
  double uniform(const Generator& stream, int64_t b, int64_t h, int64_t t, int64_t u) const {
    const int64_t block = (b * chunks + t / q_len) * heads + h;
    const uint64_t index = (static_cast<uint64_t>(block) * q_len + t % q_len) * k_len + u % k_len;
    return philox::uniform(stream.seed, stream.offset, index);
  }
};

struct Inputs {
  Tensor q, k, v;
};
Inputs random_inputs(uint64_t seed, int64_t B, int64_t L, int64_t H, int64_t dz, int64_t dv, int64_t m = -1) {
  if (m < 0) m = L;
  return {random_tensor({B, L, H, dz}, seed), random_tensor({B, m, H, dz}, seed + 1),
          random_tensor({B, m, H, dv}, seed + 2)};
}

}  // namespace

TEST_CASE("chunk_attention: values match the brute-force formula", "[ops][chunk_attention]") {
  // (L, chunk): several chunks, one full chunk, one partial chunk (L < c), chunk size 1.
  for (const auto& [L, chunk] : {std::pair<int64_t, int64_t>{6, 3}, {6, 6}, {5, 8}, {4, 1}, {12, 4}}) {
    const uint64_t seed = fresh_seed();
    INFO("L " << L << " chunk " << chunk << " seed " << seed);
    const Inputs in = random_inputs(seed, 2, L, 3, 4, 5);
    for (double scale : {1.0, 0.37}) {
      const Tensor o = chunk_attention(in.q, in.k, in.v, chunk, {.scale = scale});
      CHECK(o.shape() == Shape{2, L, 3, 5});
      CHECK(max_difference(o.to_vector<double>(), brute_force(in.q, in.k, in.v, scale, chunked_causal(chunk))) < 1e-12);
    }
  }
}

TEST_CASE("chunk_attention: the cached form matches the bottom-right aligned formula", "[ops][chunk_attention]") {
  for (const auto& [n, m] : {std::pair<int64_t, int64_t>{3, 7}, {1, 5}, {4, 4}}) {
    const uint64_t seed = fresh_seed();
    INFO("n " << n << " m " << m << " seed " << seed);
    const Inputs in = random_inputs(seed, 2, n, 2, 4, 3, m);
    const int64_t shift = m - n;
    const Tensor o = chunk_attention_cached(in.q, in.k, in.v, {.scale = 0.8});
    const Visible visible = [shift](int64_t t, int64_t u) { return u <= t + shift; };
    CHECK(max_difference(o.to_vector<double>(), brute_force(in.q, in.k, in.v, 0.8, visible)) < 1e-12);
  }
}

TEST_CASE("chunk_attention: gradients of q, k, v match finite differences", "[ops][chunk_attention]") {
  for (int64_t chunk : {3, 6}) {
    const uint64_t seed = fresh_seed();
    INFO("chunk " << chunk << " seed " << seed);
    Inputs in = random_inputs(seed, 2, 6, 2, 4, 5);
    for (Tensor* t : {&in.q, &in.k, &in.v}) t->set_requires_grad(true);
    check_gradients([chunk](const std::vector<Tensor>& x) { return chunk_attention(x[0], x[1], x[2], chunk, {.scale = 0.9}); },
                    {in.q, in.k, in.v});
  }
  const uint64_t seed = fresh_seed();
  INFO("cached form, seed " << seed);
  Inputs in = random_inputs(seed, 2, 3, 2, 4, 5, 5);
  for (Tensor* t : {&in.q, &in.k, &in.v}) t->set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& x) { return chunk_attention_cached(x[0], x[1], x[2]); },
                  {in.q, in.k, in.v});
}

TEST_CASE("chunk_attention: gradients with dropout of either kind match finite differences", "[ops][chunk_attention]") {
  for (AttentionDropout kind : {AttentionDropout::probabilities, AttentionDropout::keys}) {
    const uint64_t seed = fresh_seed();
    INFO((kind == AttentionDropout::keys ? "DropKey" : "dropout on the probabilities") << ", seed " << seed);
    Inputs in = random_inputs(seed, 2, 6, 2, 4, 5);
    Inputs cached = random_inputs(seed + 3, 2, 3, 2, 4, 5, 5);
    for (Tensor* t : {&in.q, &in.k, &in.v, &cached.q, &cached.k, &cached.v}) t->set_requires_grad(true);
    // A fresh generator per call: every evaluation draws the same mask.
    check_gradients(
        [seed, kind](const std::vector<Tensor>& x) {
          Generator gen(seed + 7);
          return chunk_attention(x[0], x[1], x[2], 3, {.scale = 0.9, .dropout = 0.3, .generator = &gen, .dropout_kind = kind});
        },
        {in.q, in.k, in.v});
    INFO("cached form");
    check_gradients(
        [seed, kind](const std::vector<Tensor>& x) {
          Generator gen(seed + 9);
          return chunk_attention_cached(x[0], x[1], x[2], {.dropout = 0.3, .generator = &gen, .dropout_kind = kind});
        },
        {cached.q, cached.k, cached.v});
  }
}

TEST_CASE("chunk_attention: dropout follows its Philox mask and is reproducible", "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(seed, 2, 8, 2, 4, 3);
  const int64_t chunk = 4, B = 2, H = 2, L = 8;
  const double p = 0.4;
  Generator gen(seed + 11);
  const Generator stream = gen;  // the (seed, offset) the op will take
  const std::vector<double> o1 = chunk_attention(in.q, in.k, in.v, chunk, {.dropout = p, .generator = &gen}).to_vector<double>();
  CHECK(gen.offset == stream.offset + 1);  // one draw per call
  const MaskIndexing mask{H, L / chunk, chunk, chunk};
  const Drop drop = [&](int64_t b, int64_t h, int64_t t, int64_t u) {
    return mask.uniform(stream, b, h, t, u) >= p ? 1.0 / (1.0 - p) : 0.0;
  };
  CHECK(max_difference(o1, brute_force(in.q, in.k, in.v, 1.0, chunked_causal(chunk), drop)) < 1e-12);
  // The same stream gives the same output; the next stream a different one; p = 0 is no dropout.
  Generator again = stream;
  CHECK(chunk_attention(in.q, in.k, in.v, chunk, {.dropout = p, .generator = &again}).to_vector<double>() == o1);
  CHECK(chunk_attention(in.q, in.k, in.v, chunk, {.dropout = p, .generator = &gen}).to_vector<double>() != o1);
  Generator untouched(seed);
  const std::vector<double> plain = chunk_attention(in.q, in.k, in.v, chunk, {.generator = &untouched}).to_vector<double>();
  CHECK(untouched.offset == 0);  // no dropout, no draw
  CHECK(max_difference(plain, brute_force(in.q, in.k, in.v, 1.0, chunked_causal(chunk))) < 1e-12);
  // Dropout rescales: the kept probabilities are scaled by 1 / (1 - p) and some are dropped.
  CHECK(plain != o1);
}

TEST_CASE("chunk_attention: DropKey removes logits by its Philox mask, unscaled, and is reproducible",
          "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const double p = 0.4;
  const AttentionDropout keys = AttentionDropout::keys;
  {
    INFO("training form");
    const int64_t chunk = 4, B = 2, H = 2, L = 8;
    const Inputs in = random_inputs(seed, B, L, H, 4, 3);
    Generator gen(seed + 13);
    const Generator stream = gen;
    const AttentionOptions options{.scale = 0.7, .dropout = p, .generator = &gen, .dropout_kind = keys};
    const std::vector<double> o1 = chunk_attention(in.q, in.k, in.v, chunk, options).to_vector<double>();
    CHECK(gen.offset == stream.offset + 1);  // one draw per call
    const MaskIndexing mask{H, L / chunk, chunk, chunk};
    const Kept kept = [&](int64_t b, int64_t h, int64_t t, int64_t u) { return mask.uniform(stream, b, h, t, u) >= p; };
    CHECK(max_difference(o1, brute_force(in.q, in.k, in.v, 0.7, chunked_causal(chunk), nullptr, kept)) < 1e-12);
    // The same stream gives the same output, the next stream a different one.
    Generator again = stream;
    CHECK(chunk_attention(in.q, in.k, in.v, chunk, {.scale = 0.7, .dropout = p, .generator = &again, .dropout_kind = keys})
              .to_vector<double>() == o1);
    CHECK(chunk_attention(in.q, in.k, in.v, chunk, options).to_vector<double>() != o1);
    // The same mask bits on the probabilities (inverted dropout) give another output: DropKey renormalises.
    Generator probabilities = stream;
    CHECK(max_difference(chunk_attention(in.q, in.k, in.v, chunk, {.scale = 0.7, .dropout = p, .generator = &probabilities})
                             .to_vector<double>(),
                         o1) > 1e-6);
  }
  {
    INFO("cached form");
    const int64_t n = 3, m = 7, B = 2, H = 2;
    const Inputs in = random_inputs(seed + 20, B, n, H, 4, 3, m);
    Generator gen(seed + 17);
    const Generator stream = gen;
    const Tensor o = chunk_attention_cached(in.q, in.k, in.v, {.dropout = p, .generator = &gen, .dropout_kind = keys});
    const MaskIndexing mask{H, 1, n, m};
    const Kept kept = [&](int64_t b, int64_t h, int64_t t, int64_t u) { return mask.uniform(stream, b, h, t, u) >= p; };
    const Visible visible = [shift = m - n](int64_t t, int64_t u) { return u <= t + shift; };
    CHECK(max_difference(o.to_vector<double>(), brute_force(in.q, in.k, in.v, 1.0, visible, nullptr, kept)) < 1e-12);
  }
}

TEST_CASE("chunk_attention: a query whose every key DropKey drops gets zeros and no gradient", "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // Chunks of 2 and p = 0.7: a query loses all of its keys with probability 0.7 or 0.49, so among the
  // 32 queries some lose all and some keep some (both are required below).
  const int64_t chunk = 2, B = 2, H = 2, L = 8, dz = 4, dv = 3;
  const double p = 0.7;
  Inputs in = random_inputs(seed, B, L, H, dz, dv);
  for (Tensor* t : {&in.q, &in.k, &in.v}) t->set_requires_grad(true);
  const Generator stream(seed + 5);
  auto attend = [&](const std::vector<Tensor>& x) {
    Generator gen = stream;
    return chunk_attention(x[0], x[1], x[2], chunk, {.dropout = p, .generator = &gen, .dropout_kind = AttentionDropout::keys});
  };
  const Tensor o = attend({in.q, in.k, in.v});
  const Tensor w = random_tensor(o.shape(), seed + 6);
  backward(o, w);
  const std::vector<double> out = o.to_vector<double>(), gq = in.q.grad().to_vector<double>();
  const MaskIndexing mask{H, L / chunk, chunk, chunk};
  int64_t empty_rows = 0, other_rows = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t h = 0; h < H; ++h) {
        bool empty = true;
        for (int64_t u = t / chunk * chunk; u <= t; ++u) empty = empty && mask.uniform(stream, b, h, t, u) < p;
        const int64_t row = (b * L + t) * H + h;
        bool zero_output = true, zero_gradient = true;
        for (int64_t c = 0; c < dv; ++c) zero_output = zero_output && out[row * dv + c] == 0.0;
        for (int64_t e = 0; e < dz; ++e) zero_gradient = zero_gradient && gq[row * dz + e] == 0.0;
        INFO("b " << b << " t " << t << " h " << h);
        if (empty) {
          ++empty_rows;
          CHECK(zero_output);
          CHECK(zero_gradient);
        } else {
          ++other_rows;
          CHECK(!zero_output);
        }
      }
  REQUIRE(empty_rows > 0);
  REQUIRE(other_rows > 0);
  // No NaN anywhere, and the gradients (zero through the empty rows) match finite differences.
  for (const Tensor* g : {&in.q, &in.k, &in.v})
    for (double x : g->grad().to_vector<double>()) CHECK(std::isfinite(x));
  CHECK(max_difference(out, brute_force(in.q, in.k, in.v, 1.0, chunked_causal(chunk), nullptr,
                                        [&](int64_t b, int64_t h, int64_t t, int64_t u) {
                                          return mask.uniform(stream, b, h, t, u) >= p;
                                        })) < 1e-12);
  check_gradients([&](const std::vector<Tensor>& x) { return attend(x); }, {in.q, in.k, in.v});
}

TEST_CASE("chunk_attention: the KV-cache form reproduces the training form", "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t chunk = 5, L = 10;
  const Inputs in = random_inputs(seed, 2, L, 2, 4, 3);
  const std::vector<double> full = chunk_attention(in.q, in.k, in.v, chunk).to_vector<double>();
  for (int64_t step : {1, 2, 3}) {
    INFO("queries per call " << step);
    // Each chunk from an empty cache: call after call, the cache grows by the new tokens' keys and values.
    for (int64_t c0 = 0; c0 < L; c0 += chunk)
      for (int64_t t = c0; t < c0 + chunk; t += step) {
        const int64_t end = std::min(t + step, c0 + chunk);
        const Tensor o = chunk_attention_cached(tokens(in.q, t, end), tokens(in.k, c0, end), tokens(in.v, c0, end));
        const std::vector<double> values = o.to_vector<double>();
        // o is [B, end - t, H, 3]: tokens t .. end of the full output.
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t u = t; u < end; ++u)
            for (int64_t x = 0; x < 2 * 3; ++x)
              CHECK(std::abs(values[(b * (end - t) + (u - t)) * 6 + x] - full[(b * L + u) * 6 + x]) < 1e-12);
      }
  }
}

TEST_CASE("chunk_attention: causality and chunk independence", "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t chunk = 4, L = 12, H = 2, dv = 3;
  const Inputs in = random_inputs(seed, 1, L, H, 4, dv);
  const std::vector<double> base = chunk_attention(in.q, in.k, in.v, chunk).to_vector<double>();
  for (int64_t changed : {0, 5, 6, 11}) {
    INFO("changed token " << changed);
    // Change token `changed` of q, k and v.
    auto perturb = [&](const Tensor& x) {
      std::vector<double> values = x.to_vector<double>();
      const int64_t per_token = x.size(2) * x.size(3);
      for (int64_t i = changed * per_token; i < (changed + 1) * per_token; ++i) values[i] += 0.5;
      return Tensor::from_vector(values, x.shape());
    };
    const std::vector<double> after = chunk_attention(perturb(in.q), perturb(in.k), perturb(in.v), chunk).to_vector<double>();
    for (int64_t t = 0; t < L; ++t) {
      bool same = true;
      for (int64_t x = 0; x < H * dv; ++x) same = same && after[t * H * dv + x] == base[t * H * dv + x];
      const bool affected = t >= changed && t / chunk == changed / chunk;
      INFO("output token " << t);
      CHECK(same == !affected);
    }
  }
}

TEST_CASE("chunk_attention: bf16 is computed in f32 and rounded", "[ops][chunk_attention]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Inputs in = random_inputs(seed, 1, 6, 2, 4, 5);
  const Tensor q = cast(in.q, DType::bf16), k = cast(in.k, DType::bf16), v = cast(in.v, DType::bf16);
  const Tensor o = chunk_attention(q, k, v, 3);
  CHECK(o.dtype() == DType::bf16);
  const Tensor expected = cast(chunk_attention(cast(q, DType::f32), cast(k, DType::f32), cast(v, DType::f32), 3), DType::bf16);
  CHECK(o.to_vector<double>() == expected.to_vector<double>());
}

TEST_CASE("chunk_attention: bad inputs throw clear errors", "[ops][chunk_attention]") {
  const Tensor q = Tensor::zeros({1, 6, 2, 4}), k = Tensor::zeros({1, 6, 2, 4}), v = Tensor::zeros({1, 6, 2, 5});
  CHECK(message_of([&] { chunk_attention(Tensor::zeros({1, 7, 2, 4}), Tensor::zeros({1, 7, 2, 4}), Tensor::zeros({1, 7, 2, 5}), 3); })
            .find("neither <= chunk_size 3 nor a multiple") != std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, Tensor::zeros({1, 6, 2, 3}), v, 3); }).find("head dims of q and k differ") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, k, Tensor::zeros({1, 6, 2, 5}, DType::f64), 3); }).find("share a dtype") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, k, Tensor::zeros({1, 5, 2, 5}), 3); }).find("different lengths") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, k, Tensor::zeros({2, 6, 2, 5}), 3); }).find("batch and heads") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, Tensor::zeros({1, 9, 2, 4}), Tensor::zeros({1, 9, 2, 5}), 3); })
            .find("chunk_attention_cached") != std::string::npos);
  CHECK(message_of([&] { chunk_attention(Tensor::zeros({6, 2, 4}), k, v, 3); }).find("[batch, length, heads, head_dim]") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, k, v, 0); }).find("chunk_size") != std::string::npos);
  CHECK(message_of([&] { chunk_attention(q, k, v, 3, {.dropout = 1.0}); }).find("dropout") != std::string::npos);
  CHECK(message_of([&] { chunk_attention(Tensor::zeros({1, 6, 2, 4}, DType::i64), k, v, 3); }).find("floating") !=
        std::string::npos);
  CHECK(message_of([&] { chunk_attention_cached(q, Tensor::zeros({1, 4, 2, 4}), Tensor::zeros({1, 4, 2, 5})); })
            .find("6 queries but only 4 keys") != std::string::npos);
  CHECK_THROWS_AS(chunk_attention(Tensor(), k, v, 3), Error);
}

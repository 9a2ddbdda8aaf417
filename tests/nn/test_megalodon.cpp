// The MEGALODON model: official parameter names and shapes, parameter counts, gradients of every
// parameter against finite differences (f64), processing a sequence in pieces with carried state =
// processing it whole (outputs and gradients), token-by-token decoding across chunk boundaries =
// the training forward, causality, DropKey attention dropout (reproducible; off in evaluation), the
// initialisation of docs/megalodon.md §2.9, bf16 mixed precision, and bad inputs.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "nn/megalodon.h"
#include "nn/megalodon_models.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

namespace {

Tensor random_tokens(int64_t B, int64_t L, int64_t vocab, uint64_t seed) { return random_ids({B, L}, vocab, seed); }

std::map<std::string, std::vector<double>> gradients(const nn::Module& model) {
  std::map<std::string, std::vector<double>> out;
  for (const nn::Parameter& p : model.named_parameters())
    out[p.name] = p.tensor.grad().defined() ? p.tensor.grad().to_vector<double>() : std::vector<double>(p.tensor.numel());
  return out;
}

double max_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("megalodon: parameter names and shapes follow the official state_dict", "[nn][megalodon]") {
  MegalodonConfig config = MegalodonConfig::preset("test");
  nn::Megalodon model(config);
  std::map<std::string, Shape> shapes;
  for (const nn::Parameter& p : model.named_parameters()) shapes[p.name] = p.tensor.shape();
  const int64_t D = config.model_dim, N = config.cema_ndim, Z = config.z_dim, V = config.value_dim,
                F = config.ffn_hidden_dim, vocab = config.vocab_size;
  const std::map<std::string, Shape> expected_layer = {
      {"mega.timenorm.weight", {D}}, {"mega.timenorm.bias", {D}},  {"mega.cema.alpha", {D, N, 1}},
      {"mega.cema.delta", {D, N, 1}}, {"mega.cema.theta", {D, 1, 1}}, {"mega.cema.gamma", {D, N, 2}},
      {"mega.cema.omega", {D, 1}},    {"mega.rmsnorm.weight", {D}},  {"mega.wz.weight", {Z, D}},
      {"mega.wz.bias", {Z}},          {"mega.wv.weight", {V, D}},    {"mega.wv.bias", {V}},
      {"mega.wr.weight", {V, D}},     {"mega.wr.bias", {V}},         {"mega.wh1.weight", {D, D}},
      {"mega.wh1.bias", {D}},         {"mega.wh2.weight", {D, V}},   {"mega.gamma", {2, Z}},
      {"mega.beta", {2, Z}},          {"nffn.norm.weight", {D}},     {"nffn.norm.bias", {D}},
      {"nffn.fc1.weight", {F, D}},    {"nffn.fc2.weight", {D, F}},   {"nffn.fc3.weight", {F, D}}};
  std::map<std::string, Shape> expected = {{"embed.weight", {vocab, D}},
                                           {"output.final_norm.weight", {D}},
                                           {"output.final_norm.bias", {D}},
                                           {"output.output.weight", {vocab, D}}};
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const auto& [name, shape] : expected_layer) expected["layers." + std::to_string(i) + "." + name] = shape;
  CHECK(shapes == expected);

  int64_t total = 0;
  for (const auto& [name, shape] : shapes) total += numel(shape);
  CHECK(total == config.parameter_count());
}

TEST_CASE("megalodon: parameter counts match the config for every variant", "[nn][megalodon]") {
  for (int variant = 0; variant < 4; ++variant) {
    MegalodonConfig config = MegalodonConfig::preset("test");
    config.swiglu = variant % 2 == 0;
    config.share_embedding = variant >= 2;
    config.norm_affine = variant != 1;
    config.rescale_nffn = variant == 3;
    INFO("variant " << variant);
    nn::Megalodon model(config);
    int64_t total = 0;
    for (const nn::Parameter& p : model.named_parameters()) total += p.tensor.numel();
    CHECK(total == config.parameter_count());
  }
}

TEST_CASE("megalodon: every parameter's gradient matches finite differences (f64)", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  MegalodonConfig config = MegalodonConfig::preset("test");  // chunk 8
  const auto owner = f64_model(config, seed);
  nn::Megalodon& model = *owner;
  const Tensor ids = random_tokens(2, 16, config.vocab_size, seed + 2);  // two chunks
  const Tensor targets = random_tokens(2, 16, config.vocab_size, seed + 3);
  auto loss_value = [&] {
    NoGradGuard no_grad;
    return nn::Megalodon::loss(model.forward(ids), targets).item();
  };
  backward(nn::Megalodon::loss(model.forward(ids), targets));

  // For each parameter tensor: the derivative along a random unit direction v, analytic <grad, v>
  // against the central difference of the loss. The central difference errs by eps^2/6 times the third
  // derivative along v (truncation) plus about 1e-16 |loss| / eps (rounding). v has unit norm so that
  // the truncation term does not grow like |v|^3: with a raw randn direction over a tensor of n values,
  // |v| ~ sqrt(n) made it reach 4e-7 for a 1024-value weight (one seed in ~50 failed the bound). At unit
  // norm both terms are near 1e-11 here, four orders under the bound, while a wrong gradient errs by
  // its share of <g, v>.
  Generator directions(seed + 4);
  for (const nn::Parameter& p : model.named_parameters()) {
    Tensor v = randn(p.tensor.shape(), DType::f64, Device::cpu(), directions);
    v = mul(v, 1.0 / std::sqrt(sum(mul(v, v)).item()));
    const std::vector<double> g = p.tensor.grad().to_vector<double>(), dv = v.to_vector<double>();
    double analytic = 0;
    for (size_t i = 0; i < g.size(); ++i) analytic += g[i] * dv[i];
    const double eps = 1e-5;
    const Tensor saved = Tensor::empty(p.tensor.shape(), DType::f64);
    copy_(saved, p.tensor);
    add_(p.tensor, mul(v, eps));
    const double plus = loss_value();
    copy_(p.tensor, saved);
    add_(p.tensor, mul(v, -eps));
    const double minus = loss_value();
    copy_(p.tensor, saved);
    const double numeric = (plus - minus) / (2 * eps);
    INFO(p.name << ": analytic " << analytic << ", numeric " << numeric);
    CHECK(std::abs(analytic - numeric) <= 1e-7 + 1e-5 * std::abs(numeric));
    CHECK(std::abs(analytic) > 0);  // every parameter is reached
  }
}

TEST_CASE("megalodon: forward_loss equals the loss of forward's logits, value and every gradient",
          "[nn][megalodon]") {
  // The fused head and loss (linear_cross_entropy) against the logits and cross_entropy, for the untied and the
  // tied head, with ignored targets: in f64 to rounding (1e-12); in f32 the two differ by the head's GEMM
  // summation order, ~1e-7 relative (1e-5 checked).
  for (const bool tied : {false, true}) {
    const uint64_t seed = fresh_seed();
    INFO((tied ? "tied" : "untied") << " head, seed " << seed);
    MegalodonConfig config = MegalodonConfig::preset("test");
    config.share_embedding = tied;
    const auto f64 = f64_model(config, seed);
    const auto f32 = copy_model(*f64, Device::cpu(), DType::f32);
    const Tensor ids = random_tokens(2, 12, config.vocab_size, seed + 2);
    std::vector<int64_t> t = random_tokens(2, 12, config.vocab_size, seed + 3).to_vector<int64_t>();
    t[0] = t[17] = -100;
    const Tensor targets = Tensor::from_vector(t, {2, 12});
    for (const nn::Megalodon* model : {f64.get(), f32.get()}) {
      const double tolerance = model == f64.get() ? 1e-12 : 1e-5;
      INFO(dtype_name(model->compute_dtype()));
      model->zero_grad();
      const Tensor fused = model->forward_loss(ids, targets);
      backward(fused);
      const auto fused_grads = gradients(*model);
      model->zero_grad();
      const Tensor plain = nn::Megalodon::loss(model->forward(ids), targets);
      backward(plain);
      CHECK(std::abs(fused.item() - plain.item()) <= tolerance * std::abs(plain.item()));
      for (const nn::Parameter& p : model->named_parameters()) {
        INFO(p.name);
        const Tensor want = p.tensor.grad();
        CHECK(relative_error(Tensor::from_vector(fused_grads.at(p.name), want.shape(), DType::f64), want) <= tolerance);
      }
    }
  }
}

TEST_CASE("megalodon: a sequence in pieces with carried state equals the whole", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");  // chunk 8
  const auto owner = f64_model(config, seed);
  nn::Megalodon& model = *owner;
  const Tensor ids = random_tokens(2, 24, config.vocab_size, seed + 2);
  Generator gen(seed + 3);
  const Tensor w = randn({2, 24, config.vocab_size}, DType::f64, Device::cpu(), gen);

  // Whole.
  const Tensor whole = model.forward(ids);
  backward(whole, w);
  const auto whole_grads = gradients(model);
  model.zero_grad();

  // Pieces at and across chunk boundaries: [0, 5) [5, 8) [8, 19) [19, 24).
  nn::ModelState state;
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t end : {5, 8, 19, 24}) {
    nn::ModelState next;
    parts.push_back(model.forward(slice(ids, 1, start, end), &state, &next));
    state = next;
    start = end;
  }
  const Tensor joined = concat(parts, 1);
  CHECK(relative_error(joined, whole) < 1e-12);
  backward(joined, w);
  const auto piece_grads = gradients(model);
  for (const auto& [name, g] : whole_grads) {
    INFO(name);
    CHECK(max_difference(piece_grads.at(name), g) < 1e-10);
  }
}

TEST_CASE("megalodon: token-by-token decoding across chunk boundaries equals the training forward",
          "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");
  const auto owner = f64_model(config, seed);
  nn::Megalodon& model = *owner;
  model.eval();
  NoGradGuard no_grad;
  const Tensor ids = random_tokens(1, 24, config.vocab_size, seed + 2);
  const Tensor whole = model.forward(ids);
  nn::ModelState state;
  // A prompt of 11 tokens (one chunk and a partial one), then one token at a time.
  nn::ModelState next;
  std::vector<Tensor> parts{model.forward(slice(ids, 1, 0, 11), &state, &next)};
  state = next;
  for (int64_t t = 11; t < 24; ++t) {
    nn::ModelState after;
    parts.push_back(model.forward(slice(ids, 1, t, t + 1), &state, &after));
    state = after;
    CHECK(state.layers[0].cached_tokens() == (t + 1) % config.chunk_size);
  }
  CHECK(relative_error(concat(parts, 1), whole) < 1e-12);
}

TEST_CASE("megalodon: causality — a token changes no earlier logit", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");
  const auto owner = f64_model(config, seed);
  nn::Megalodon& model = *owner;
  NoGradGuard no_grad;
  std::vector<int64_t> tokens = random_tokens(1, 16, config.vocab_size, seed + 2).to_vector<int64_t>();
  const Tensor before = model.forward(Tensor::from_vector(tokens, {1, 16}));
  const int64_t t = 10;
  tokens[t] = (tokens[t] + 1) % config.vocab_size;
  const Tensor after = model.forward(Tensor::from_vector(tokens, {1, 16}));
  CHECK(relative_error(slice(after, 1, 0, t), slice(before, 1, 0, t)) == 0.0);
  CHECK(relative_error(slice(after, 1, t, 16), slice(before, 1, t, 16)) > 0.0);
}

TEST_CASE("megalodon: DropKey attention dropout is reproducible in training and off in evaluation", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // The test model with the given attention dropout, from the same parameters every time.
  auto make = [seed](double p, const std::string& kind) {
    MegalodonConfig config = MegalodonConfig::preset("test");  // no other dropout
    config.attention_dropout = p;
    config.attention_dropout_kind = kind;
    return std::shared_ptr<nn::Megalodon>(f64_model(config, seed));
  };
  const int64_t vocab = MegalodonConfig::preset("test").vocab_size;
  const Tensor ids = random_tokens(2, 16, vocab, seed + 2);  // two chunks
  const Tensor targets = random_tokens(2, 16, vocab, seed + 3);
  // Loss and gradients of one training step, with the default generator (the dropout stream) reset.
  auto step = [&](nn::Megalodon& model) {
    manual_seed(seed + 4);
    model.zero_grad();
    const Tensor loss = nn::Megalodon::loss(model.forward(ids), targets);
    backward(loss);
    return std::pair{loss.item(), gradients(model)};
  };
  const auto dropkey = make(0.2, "dropkey");
  const auto [loss, grads] = step(*dropkey);
  CHECK(std::isfinite(loss));
  for (const auto& [name, g] : grads) {
    INFO(name);
    for (double x : g) CHECK(std::isfinite(x));
  }
  // The same stream, the same step, bit for bit.
  const auto [loss_again, grads_again] = step(*dropkey);
  CHECK(loss_again == loss);
  CHECK(grads_again == grads);
  // DropKey acts, and differently from dropout on the probabilities at the same rate and stream.
  const auto plain = make(0.0, "dropkey");
  const auto probabilities = make(0.2, "dropout");
  CHECK(step(*plain).first != loss);
  CHECK(step(*probabilities).first != loss);
  // In evaluation there is no dropout: the model equals the one with p = 0.
  dropkey->eval();
  plain->eval();
  NoGradGuard no_grad;
  CHECK(relative_error(dropkey->forward(ids), plain->forward(ids)) == 0.0);
}

TEST_CASE("megalodon: bad inputs give clear errors", "[nn][megalodon]") {
  const MegalodonConfig config = MegalodonConfig::preset("test");
  nn::Megalodon model(config);
  CHECK(error_message([&] { model.forward(Tensor::zeros({2, 8})); }).find("integer") != std::string::npos);
  CHECK(error_message([&] { model.forward(Tensor::zeros({8}, DType::i64)); }).find("[B, L]") != std::string::npos);
  CHECK(error_message([&] { model.forward(Tensor::full({1, 4}, 50, DType::i64)); }).find("50") != std::string::npos);
  CHECK(contains(error_message([&] { model.forward_loss(Tensor::zeros({2, 4}, DType::i64), Tensor::zeros({2, 3}, DType::i64)); }),
                 "do not match"));
  MegalodonConfig bad = config;
  bad.model_dim = 15;
  CHECK(error_message([&] { nn::Megalodon m(bad); }).find("model_dim") != std::string::npos);
}

TEST_CASE("megalodon: bf16 mixed precision on the CPU keeps f32 gradients close to f32 compute", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");
  Generator gen(seed);
  nn::InitOptions options;
  options.generator = &gen;
  nn::Megalodon model(config, options);
  const Tensor ids = random_tokens(2, 16, config.vocab_size, seed + 1);
  const Tensor targets = random_tokens(2, 16, config.vocab_size, seed + 2);
  backward(nn::Megalodon::loss(model.forward(ids), targets));
  const auto f32_grads = gradients(model);
  model.zero_grad();
  model.set_compute_dtype(DType::bf16);
  const Tensor logits = model.forward(ids);
  CHECK(logits.dtype() == DType::f32);  // logits and loss in f32 whatever the compute dtype
  backward(nn::Megalodon::loss(logits, targets));
  // bf16 rounds every activation to 8 bits of mantissa (2^-9 relative); how much of that reaches a
  // gradient depends on the conditioning of the random model, which has a heavy tail: at step 0 a
  // TimestepNorm group normalises dg = 4 values, whose variance can be tiny. Over 1,400 fresh seeds
  // (median / worst): the whole gradient's relative error 0.011 / 0.184, the median over parameters
  // of each parameter's 0.013 / 0.130, and the largest parameter's 0.032 / 0.72 (too heavy-tailed to
  // bound). The bounds are the worst seen, doubled; a broken bf16 path gives errors of order 1.
  double diff2 = 0, want2 = 0;
  std::vector<double> errors;
  for (const nn::Parameter& p : model.named_parameters()) {
    INFO(p.name);
    REQUIRE(p.tensor.grad().dtype() == DType::f32);  // gradients of the f32 master parameters
    const Tensor want = Tensor::from_vector(f32_grads.at(p.name), p.tensor.shape(), DType::f64);
    const Tensor diff = sub(cast(p.tensor.grad(), DType::f64), want);
    diff2 += sum(mul(diff, diff)).item();
    want2 += sum(mul(want, want)).item();
    errors.push_back(relative_error(p.tensor.grad(), want));
  }
  std::sort(errors.begin(), errors.end());
  CHECK(std::sqrt(diff2 / want2) < 0.37);
  CHECK(errors[errors.size() / 2] < 0.26);
}

TEST_CASE("megalodon: initialisation follows the spec (§2.9)", "[nn][megalodon]") {
  MegalodonConfig config = MegalodonConfig::preset("test");
  config.model_dim = 256;
  config.z_dim = 64;
  config.value_dim = 128;
  config.ffn_hidden_dim = 384;
  config.norm_num_groups = 16;
  config.cema_ndim = 16;
  config.vocab_size = 500;
  config.num_layers = 1;
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  nn::InitOptions options;
  options.generator = &gen;
  nn::Megalodon model(config, options);
  std::map<std::string, Tensor> p;
  for (const nn::Parameter& parameter : model.named_parameters()) p[parameter.name] = parameter.tensor;

  auto stats = [](const Tensor& t) {
    const std::vector<double> v = t.to_vector<double>();
    double mean = 0, square = 0, largest = 0;
    for (double x : v) mean += x, square += x * x, largest = std::max(largest, std::abs(x));
    mean /= double(v.size());
    return std::tuple{mean, std::sqrt(square / double(v.size()) - mean * mean), largest};
  };
  auto check_normal = [&](const std::string& name, double std, double bound = 0) {
    const auto [mean, sd, largest] = stats(p.at(name));
    const double n = double(p.at(name).numel());
    INFO(name << ": mean " << mean << ", std " << sd << ", max |x| " << largest);
    CHECK(std::abs(mean) < 5 * std / std::sqrt(n));
    CHECK(std::abs(sd - std) < 5 * std / std::sqrt(2 * n));  // 5 standard errors of a sample std
    if (bound > 0) CHECK(largest <= bound);
  };
  const double D = 256, V = 128, F = 384;
  check_normal("embed.weight", 1 / std::sqrt(D) * 0.9866, 3 / std::sqrt(D));  // truncation at 3σ: std × 0.9866
  check_normal("output.output.weight", 1 / std::sqrt(D) * 0.9866, 3 / std::sqrt(D));
  for (const char* name : {"wz", "wv", "wr", "wh1"})
    check_normal(std::string("layers.0.mega.") + name + ".weight", 1 / std::sqrt(3 * D));
  check_normal("layers.0.mega.wh2.weight", 1 / std::sqrt(3 * V));
  check_normal("layers.0.nffn.fc1.weight", 1 / std::sqrt(3 * D));
  check_normal("layers.0.nffn.fc3.weight", 1 / std::sqrt(3 * D));
  check_normal("layers.0.nffn.fc2.weight", 1 / std::sqrt(3 * F));
  check_normal("layers.0.mega.cema.alpha", 0.2);
  check_normal("layers.0.mega.cema.delta", 0.2);
  // omega: normal(0, 0.25) truncated to [-1, 1] (4σ: the std shrinks by a factor 0.9976).
  check_normal("layers.0.mega.cema.omega", 0.25 * 0.9976, 1.0);
  // gamma: real parts normal(0, 1), imaginary parts exactly 0.
  const std::vector<double> gamma = p.at("layers.0.mega.cema.gamma").to_vector<double>();
  for (size_t i = 0; i < gamma.size(); i += 2) CHECK(gamma[i + 1] == 0.0);
  check_normal("layers.0.mega.cema.gamma", std::sqrt(0.5));  // half the entries are 0: std sqrt(1/2)
  // theta: sigmoid(theta) is a permutation of D^(-k/D), k = 1..D, and not the identity order.
  std::vector<double> bases;
  for (double t : p.at("layers.0.mega.cema.theta").to_vector<double>()) bases.push_back(1 / (1 + std::exp(-t)));
  std::vector<double> sorted = bases;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  for (int k = 1; k <= 256; ++k) CHECK(std::abs(sorted[k - 1] - std::pow(D, -k / D)) < 1e-5);
  CHECK(bases != sorted);
  // Norm scales (stored as scale − 1), shifts, biases and the q/k affine start at zero.
  for (const char* name : {"layers.0.mega.timenorm.weight", "layers.0.mega.timenorm.bias", "layers.0.mega.rmsnorm.weight",
                           "layers.0.mega.wz.bias", "layers.0.mega.wv.bias", "layers.0.mega.wr.bias",
                           "layers.0.mega.wh1.bias", "layers.0.mega.gamma", "layers.0.mega.beta",
                           "layers.0.nffn.norm.weight", "layers.0.nffn.norm.bias", "output.final_norm.weight",
                           "output.final_norm.bias"}) {
    INFO(name);
    CHECK(std::get<2>(stats(p.at(name))) == 0.0);
  }
}

TEST_CASE("megalodon: windowed norm re-estimation replaces only the norm states", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");  // chunk 8
  const auto owner = f64_model(config, seed);
  nn::Megalodon& model = *owner;
  model.eval();
  NoGradGuard no_grad;
  const Tensor ids = random_tokens(1, 36, config.vocab_size, seed + 2);
  nn::ModelState state;
  model.forward(ids, nullptr, &state);
  const nn::ModelState before = state;
  const Tensor window = slice(ids, 1, 12, 36);  // the last 3 chunks
  model.reestimate_norm_states(window, state);
  nn::ModelState fresh;
  model.forward(window, nullptr, &fresh);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    INFO("layer " << i);
    CHECK(state.layers[i].norm.count.to_vector<int64_t>() == std::vector<int64_t>{24});
    CHECK(relative_error(state.layers[i].norm.mean, fresh.layers[i].norm.mean) == 0.0);
    CHECK(relative_error(state.layers[i].norm.var, fresh.layers[i].norm.var) == 0.0);
    CHECK(state.layers[i].cema.is_same(before.layers[i].cema));  // CEMA state and KV cache kept
    CHECK(state.layers[i].keys.is_same(before.layers[i].keys));
  }
  CHECK(relative_error(state.final_norm.mean, fresh.final_norm.mean) == 0.0);
  CHECK(state.final_norm.count.to_vector<int64_t>() == std::vector<int64_t>{24});
  CHECK(error_message([&] { model.reestimate_norm_states(window, fresh = nn::ModelState()); }).find("layers") !=
        std::string::npos);
}

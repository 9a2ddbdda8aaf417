// The MEGALODON model: official parameter names and shapes, parameter counts, gradients of every
// parameter against finite differences (f64), processing a sequence in pieces with carried state =
// processing it whole (outputs and gradients), token-by-token decoding across chunk boundaries =
// the training forward, causality, and bad inputs.
#include <map>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "nn/megalodon.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

namespace {

nn::InitOptions f64_options(Generator& gen) {
  nn::InitOptions options;
  options.dtype = DType::f64;
  options.generator = &gen;
  return options;
}

// The zero-initialised parameters (norm scales and shifts, biases, q/k scale and offset) get random
// values too, so that every gradient path carries signal.
void perturb(const nn::Module& model, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  for (const nn::Parameter& p : model.named_parameters()) add_(p.tensor, mul(rand(p.tensor.shape(), DType::f64, Device::cpu(), gen), 0.2));
}

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
  Generator gen(seed);
  nn::Megalodon model(config, f64_options(gen));
  model.set_compute_dtype(DType::f64);
  perturb(model, seed + 1);
  const Tensor ids = random_tokens(2, 16, config.vocab_size, seed + 2);  // two chunks
  const Tensor targets = random_tokens(2, 16, config.vocab_size, seed + 3);
  auto loss_value = [&] {
    NoGradGuard no_grad;
    return nn::Megalodon::loss(model.forward(ids), targets).item();
  };
  backward(nn::Megalodon::loss(model.forward(ids), targets));

  // For each parameter tensor: the derivative along a random direction, analytic <grad, v> against
  // the central difference of the loss.
  Generator directions(seed + 4);
  for (const nn::Parameter& p : model.named_parameters()) {
    const Tensor v = randn(p.tensor.shape(), DType::f64, Device::cpu(), directions);
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

TEST_CASE("megalodon: a sequence in pieces with carried state equals the whole", "[nn][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = MegalodonConfig::preset("test");  // chunk 8
  Generator gen(seed);
  nn::Megalodon model(config, f64_options(gen));
  model.set_compute_dtype(DType::f64);
  perturb(model, seed + 1);
  const Tensor ids = random_tokens(2, 24, config.vocab_size, seed + 2);
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
  Generator gen(seed);
  nn::Megalodon model(config, f64_options(gen));
  model.set_compute_dtype(DType::f64);
  perturb(model, seed + 1);
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
  Generator gen(seed);
  nn::Megalodon model(config, f64_options(gen));
  model.set_compute_dtype(DType::f64);
  perturb(model, seed + 1);
  NoGradGuard no_grad;
  std::vector<int64_t> tokens = random_tokens(1, 16, config.vocab_size, seed + 2).to_vector<int64_t>();
  const Tensor before = model.forward(Tensor::from_vector(tokens, {1, 16}));
  const int64_t t = 10;
  tokens[t] = (tokens[t] + 1) % config.vocab_size;
  const Tensor after = model.forward(Tensor::from_vector(tokens, {1, 16}));
  CHECK(relative_error(slice(after, 1, 0, t), slice(before, 1, 0, t)) == 0.0);
  CHECK(relative_error(slice(after, 1, t, 16), slice(before, 1, t, 16)) > 0.0);
}

TEST_CASE("megalodon: bad inputs give clear errors", "[nn][megalodon]") {
  const MegalodonConfig config = MegalodonConfig::preset("test");
  nn::Megalodon model(config);
  CHECK(error_message([&] { model.forward(Tensor::zeros({2, 8})); }).find("integer") != std::string::npos);
  CHECK(error_message([&] { model.forward(Tensor::zeros({8}, DType::i64)); }).find("[B, L]") != std::string::npos);
  CHECK(error_message([&] { model.forward(Tensor::full({1, 4}, 50, DType::i64)); }).find("50") != std::string::npos);
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
  for (const nn::Parameter& p : model.named_parameters()) {
    INFO(p.name);
    REQUIRE(p.tensor.grad().dtype() == DType::f32);  // gradients of the f32 master parameters
    const Tensor want = Tensor::from_vector(f32_grads.at(p.name), p.tensor.shape(), DType::f64);
    CHECK(relative_error(p.tensor.grad(), want) < 0.1);
  }
}

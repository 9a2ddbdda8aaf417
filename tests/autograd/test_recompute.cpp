// Activation recomputation (autograd/recompute.h) and the engine's grad() beneath it: gradients of
// inputs and parameters bit for bit those of the plain forward (f64 and f32, a composite function
// with dropout and the "test" MEGALODON model with every dropout on), the random stream replayed and
// the generator left as it was, hooks firing once, retain_graph, finite differences (f64), lower
// peak memory, and the errors for a function that breaks the contract.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/recompute.h"
#include "core/allocator.h"
#include "nn/megalodon.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using autograd::recompute;
using nn::MegalodonConfig;

namespace {

std::vector<double> values(const Tensor& t) {
  REQUIRE(t.defined());
  return t.to_vector<double>();
}

// A small function with what a block has: parameters (w1 used twice), dropout, an input used in
// several places, an input that needs no gradient, and two outputs.
struct Composite {
  Tensor w1, b1, w2;  // [5, 6], [5], [6, 5]

  static Composite random(DType dtype, uint64_t seed) {
    return {random_tensor({5, 6}, seed, dtype).set_requires_grad(true),
            random_tensor({5}, seed + 1, dtype).set_requires_grad(true),
            random_tensor({6, 5}, seed + 2, dtype).set_requires_grad(true)};
  }
  std::vector<Tensor> parameters() const { return {w1, b1, w2}; }

  // in = {x [4, 6], c [4, 6]} -> {y [4, 6], z [4, 5]}
  std::vector<Tensor> operator()(const std::vector<Tensor>& in) const {
    const Tensor& x = in[0];
    const Tensor h = dropout(tanh(linear(x, w1, b1)), 0.3, true);
    const Tensor y = add(mul(linear(h, w2), sigmoid(x)), in[1]);
    const Tensor z = mul(h, linear(x, w1));
    return {y, z};
  }
};

// The composite with its inputs: x [4, 6], which requires grad, and c [4, 6], which does not.
struct CompositeCase {
  Composite f;
  Tensor x, c;

  explicit CompositeCase(uint64_t seed, DType dtype = DType::f64)
      : f(Composite::random(dtype, seed)),
        x(random_tensor({4, 6}, seed + 10, dtype).set_requires_grad(true)),
        c(random_tensor({4, 6}, seed + 11, dtype)) {}
  std::vector<Tensor> plain() const { return f({x, c}); }
  std::vector<Tensor> recomputed() const { return recompute("composite", f, {x, c}, f.parameters()); }
};

// One forward and backward of the composite, plain or recomputed, from seed: returns every value that
// must not depend on recomputation — outputs, gradients, and draws of the default generator made
// between the forward and the backward and after the backward.
std::vector<std::vector<double>> composite_step(bool recomputed, DType dtype, uint64_t seed) {
  const CompositeCase test(seed, dtype);
  manual_seed(seed + 12);
  const std::vector<Tensor> out = recomputed ? test.recomputed() : test.plain();
  const Tensor between = rand({3}, dtype);
  autograd::backward(out, {random_tensor({4, 6}, seed + 13, dtype), random_tensor({4, 5}, seed + 14, dtype)});
  const Tensor after = rand({3}, dtype);
  return {values(out[0]),           values(out[1]),           values(test.x.grad()), values(test.f.w1.grad()),
          values(test.f.b1.grad()), values(test.f.w2.grad()), values(between),       values(after)};
}

// How a model of the tests below holds its parameters and computes, and which attention dropout it
// uses (the unfused path's dropout on the probabilities, or the fused path's DropKey).
struct Variant {
  DType parameters = DType::f32;
  DType compute = DType::f32;
  std::string attention_dropout_kind = "dropout";
};

// The "test" model with every dropout on, its zero-initialised parameters perturbed so that every
// gradient path carries signal.
std::unique_ptr<nn::Megalodon> dropout_model(bool checkpointing, const Variant& variant, uint64_t seed,
                                             int64_t layers = 2) {
  MegalodonConfig config = MegalodonConfig::preset("test");
  config.num_layers = layers;
  config.dropout = 0.1;
  config.hidden_dropout = 0.1;
  config.attention_dropout = 0.1;
  config.attention_dropout_kind = variant.attention_dropout_kind;
  config.activation_checkpointing = checkpointing;
  Generator gen(seed);
  nn::InitOptions options;
  options.dtype = variant.parameters;
  options.generator = &gen;
  auto model = std::make_unique<nn::Megalodon>(config, options);
  model->set_compute_dtype(variant.compute);
  NoGradGuard no_grad;
  for (const Tensor& p : model->parameters()) add_(p, mul(rand(p.shape(), p.dtype(), Device::cpu(), gen), 0.2));
  return model;
}

// Logits, loss and every parameter's gradient of one training step, and how often each parameter's
// post-accumulate hook fired.
struct ModelStep {
  std::vector<double> logits;
  double loss = 0;
  std::map<std::string, std::vector<double>> grads;
  // Shared with the hooks, which stay registered on the parameters after the step.
  std::shared_ptr<std::map<std::string, int>> hook_calls = std::make_shared<std::map<std::string, int>>();
};

ModelStep model_step(const nn::Megalodon& model, const Tensor& ids, const Tensor& targets, uint64_t stream) {
  ModelStep step;
  model.zero_grad();
  for (const nn::Parameter& p : model.named_parameters())
    p.tensor.register_post_accumulate_grad_hook(
        [calls = step.hook_calls, name = p.name](const Tensor&) { ++(*calls)[name]; });
  manual_seed(stream);
  const Tensor logits = model.forward(ids);
  const Tensor loss = nn::Megalodon::loss(logits, targets);
  backward(loss);
  step.logits = values(logits);
  step.loss = loss.item();
  for (const nn::Parameter& p : model.named_parameters()) step.grads[p.name] = values(p.tensor.grad());
  return step;
}

}  // namespace

TEST_CASE("recompute: a composite function's outputs and gradients are bitwise those of the plain run",
          "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (DType dtype : {DType::f64, DType::f32}) {
    INFO(dtype_name(dtype));
    const auto plain = composite_step(false, dtype, seed);
    const auto recomputed = composite_step(true, dtype, seed);
    const char* what[] = {
        "y", "z", "x.grad", "w1.grad", "b1.grad", "w2.grad", "draw before backward", "draw after backward"};
    for (size_t i = 0; i < plain.size(); ++i) {
      INFO(what[i]);
      CHECK(recomputed[i] == plain[i]);
    }
  }
}

TEST_CASE("recompute: the replay draws the forward's random numbers, so the dropout mask is the same",
          "[autograd][recompute]") {
  // With a different stream in the replay the masks (and so the gradients) would differ: check that
  // dropout really acts here, by comparing with a run whose stream differs.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const CompositeCase test(seed);
  auto x_grad = [&](uint64_t stream) {
    test.x.set_grad(Tensor());
    manual_seed(stream);
    const std::vector<Tensor> out = test.recomputed();
    manual_seed(stream + 1000);  // whatever the generator holds at backward time is irrelevant
    autograd::backward(out, {Tensor::ones({4, 6}, DType::f64), Tensor::ones({4, 5}, DType::f64)});
    return values(test.x.grad());
  };
  CHECK(x_grad(seed) == x_grad(seed));
  CHECK(x_grad(seed) != x_grad(seed + 1));
}

TEST_CASE("recompute: a parameter's gradient is accumulated and its hooks fire once per backward",
          "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const CompositeCase test(seed);
  const Composite& f = test.f;
  std::map<std::string, int> post_calls, hook_calls;
  std::vector<double> w1_grad_in_hook;
  const std::map<std::string, Tensor> parameters = {{"w1", f.w1}, {"b1", f.b1}, {"w2", f.w2}};
  for (const auto& [name, p] : parameters) {
    p.register_post_accumulate_grad_hook([&, name = name](const Tensor& leaf) {
      ++post_calls[name];
      if (name == "w1") w1_grad_in_hook = values(leaf.grad());
    });
    autograd::register_hook(p, [&, name = name](const Tensor& g) {
      ++hook_calls[name];
      return g;
    });
  }
  manual_seed(seed + 12);
  autograd::backward(test.recomputed(), {random_tensor({4, 6}, seed + 13), random_tensor({4, 5}, seed + 14)});
  for (const auto& [name, p] : parameters) {
    INFO(name);
    CHECK(post_calls[name] == 1);
    CHECK(hook_calls[name] == 1);  // w1 reaches its leaf along two paths: one hook call for the sum
  }
  CHECK(w1_grad_in_hook == values(f.w1.grad()));  // the hook saw the final gradient

  // A second forward and backward accumulates: twice the gradient of one, exactly (2g is exact).
  const std::vector<double> once = values(f.w2.grad());
  manual_seed(seed + 12);
  autograd::backward(test.recomputed(), {random_tensor({4, 6}, seed + 13), random_tensor({4, 5}, seed + 14)});
  CHECK(post_calls["w2"] == 2);
  const std::vector<double> twice = values(f.w2.grad());
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == 2 * once[i]);
}

TEST_CASE("recompute: retain_graph lets the node run its recomputation again", "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const CompositeCase test(seed);
  manual_seed(seed + 12);
  const std::vector<Tensor> out = test.recomputed();
  const Tensor loss = add(sum(out[0]), sum(out[1]));
  backward(loss, {}, true);
  const std::vector<double> once = values(test.x.grad());
  backward(loss);
  const std::vector<double> twice = values(test.x.grad());
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == 2 * once[i]);
}

TEST_CASE("recompute: gradients match finite differences (f64)", "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor c = random_tensor({4, 6}, seed + 11);
  // The generator is reset on every call, so that each evaluation draws the same dropout mask.
  check_gradients_multi(
      [&](const std::vector<Tensor>& in) {
        const Composite f{in[1], in[2], in[3]};
        manual_seed(seed + 12);
        return recompute("composite", f, {in[0], c}, f.parameters());
      },
      {random_tensor({4, 6}, seed + 10).set_requires_grad(true), random_tensor({5, 6}, seed).set_requires_grad(true),
       random_tensor({5}, seed + 1).set_requires_grad(true), random_tensor({6, 5}, seed + 2).set_requires_grad(true)});
}

TEST_CASE("recompute: without a gradient to compute it is the function itself", "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  int calls = 0;
  auto square = [&](const std::vector<Tensor>& in) {
    ++calls;
    return std::vector<Tensor>{mul(in[0], in[0])};
  };
  {
    NoGradGuard no_grad;
    CHECK(!recompute("square", square, {random_tensor({3}, seed).set_requires_grad(true)}, {})[0].requires_grad());
  }
  CHECK(!recompute("square", square, {random_tensor({3}, seed + 1)}, {})[0].requires_grad());  // nothing requires grad
  CHECK(calls == 2);
}

TEST_CASE("recompute: a function may return its input itself", "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({3}, seed).set_requires_grad(true);
  const Tensor y = recompute("identity", [](const std::vector<Tensor>& in) { return in; }, {x}, {})[0];
  CHECK(x.is_leaf());  // the input was not turned into the node's output
  CHECK(!y.is_leaf());
  const Tensor seed_grad = random_tensor({3}, seed + 1);
  backward(y, seed_grad);
  CHECK(values(x.grad()) == values(seed_grad));
}

TEST_CASE("recompute: a function that breaks the contract fails in backward, naming the problem",
          "[autograd][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor x = random_tensor({3}, seed).set_requires_grad(true);
  const Tensor w = random_tensor({3}, seed + 1).set_requires_grad(true);
  manual_seed(seed + 2);
  const Generator before = default_generator();

  SECTION("a leaf requiring grad that is not listed") {
    const Tensor y = recompute(
        "unlisted", [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(in[0], w)}; }, {x}, {})[0];
    const std::string message = error_message([&] { backward(sum(y)); });
    CHECK(contains(message, "recompute unlisted"));
    CHECK(contains(message, "neither one of its inputs nor one of the listed parameters"));
    CHECK(!w.grad().defined());
  }
  SECTION("a tensor requiring grad computed outside the function") {
    const Tensor outside = mul(w, 2.0);
    const Tensor y =
        recompute("captured", [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(in[0], outside)}; },
                  {x}, {w})[0];
    const std::string message = error_message([&] { backward(sum(y)); });
    CHECK(contains(message, "recompute captured"));
    CHECK(contains(message, "computed outside it"));
    CHECK(contains(message, "pass that tensor as an input"));
  }
  SECTION("a function whose output changes shape") {
    int calls = 0;
    const Tensor y = recompute("changing",
                               [&](const std::vector<Tensor>& in) {
                                 return std::vector<Tensor>{++calls == 1 ? mul(in[0], 2.0) : slice(in[0], 0, 0, 2)};
                               },
                               {x}, {})[0];
    const std::string message = error_message([&] { backward(sum(y)); });
    CHECK(contains(message, "recompute changing"));
    CHECK(contains(message, "[3]"));
    CHECK(contains(message, "deterministic"));
  }
  // The failed backward left grad mode and the generator as they were.
  CHECK(grad_enabled());
  CHECK(default_generator().seed == before.seed);
  CHECK(default_generator().offset == before.offset);
}

TEST_CASE("grad: returns the gradients of leaves without accumulating or firing hooks", "[autograd][grad]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor a = random_tensor({4}, seed).set_requires_grad(true);
  const Tensor b = random_tensor({4}, seed + 1).set_requires_grad(true);
  const Tensor unused = random_tensor({4}, seed + 2).set_requires_grad(true);
  int hooks = 0;
  a.register_post_accumulate_grad_hook([&](const Tensor&) { ++hooks; });
  autograd::register_hook(a, [&](const Tensor& g) {
    ++hooks;
    return g;
  });
  const Tensor seed_grad = random_tensor({4}, seed + 3);
  auto f = [&] { return mul(add(mul(a, b), a), b); };  // (a b + a) b: a reached along two paths
  const std::vector<Tensor> grads = autograd::grad({f()}, {seed_grad}, {a, b, unused, a});
  REQUIRE(grads.size() == 4);
  CHECK(!grads[2].defined());
  CHECK(!a.grad().defined());
  CHECK(!b.grad().defined());
  CHECK(hooks == 0);
  // The same numbers backward accumulates.
  backward(f(), seed_grad);
  CHECK(values(grads[0]) == values(a.grad()));
  CHECK(values(grads[3]) == values(a.grad()));
  CHECK(values(grads[1]) == values(b.grad()));

  const Tensor not_leaf = mul(a, 2.0);
  const std::string message = error_message([&] { autograd::grad({sum(mul(not_leaf, b))}, {}, {not_leaf}); });
  CHECK(contains(message, "grad: input 0"));
  CHECK(contains(message, "is not a leaf that requires grad"));
}

TEST_CASE("recompute: MEGALODON blocks with dropout give bitwise the plain gradients (f64, f32, bf16), hooks once",
          "[autograd][recompute][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t vocab = MegalodonConfig::preset("test").vocab_size;
  const Tensor ids = random_ids({2, 19}, vocab, seed + 1);  // two chunks and a partial one
  const Tensor targets = random_ids({2, 19}, vocab, seed + 2);
  const std::vector<Variant> variants = {
      {DType::f64, DType::f64, "dropout"}, {DType::f32, DType::f32, "dropout"}, {DType::f32, DType::bf16, "dropkey"}};
  for (const Variant& variant : variants) {
    INFO("parameters " << dtype_name(variant.parameters) << ", compute " << dtype_name(variant.compute) << ", "
                       << variant.attention_dropout_kind);
    const auto plain_model = dropout_model(false, variant, seed);
    const auto recomputed_model = dropout_model(true, variant, seed);
    const ModelStep plain = model_step(*plain_model, ids, targets, seed + 3);
    const ModelStep recomputed = model_step(*recomputed_model, ids, targets, seed + 3);
    CHECK(recomputed.logits == plain.logits);
    CHECK(recomputed.loss == plain.loss);
    for (const auto& [name, g] : plain.grads) {
      INFO(name);
      CHECK(recomputed.grads.at(name) == g);
      CHECK(plain.hook_calls->at(name) == 1);
      CHECK(recomputed.hook_calls->at(name) == 1);
    }
    // Dropout is on: another stream gives another loss (the replay is what keeps them equal above).
    CHECK(model_step(*recomputed_model, ids, targets, seed + 4).loss != plain.loss);
  }
}

TEST_CASE("recompute: MEGALODON training needs less peak memory with recomputation",
          "[autograd][recompute][megalodon]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t vocab = MegalodonConfig::preset("test").vocab_size;
  const Tensor ids = random_ids({2, 64}, vocab, seed + 1);
  const Tensor targets = random_ids({2, 64}, vocab, seed + 2);
  const Device cpu = Device::cpu();
  auto peak = [&](const nn::Megalodon& model) {
    const int64_t base = memory_stats(cpu).current_bytes;
    reset_peak_memory(cpu);
    manual_seed(seed + 3);
    backward(nn::Megalodon::loss(model.forward(ids), targets));
    return memory_stats(cpu).peak_bytes - base;
  };
  const auto plain_model = dropout_model(false, Variant{}, seed, 4);
  const auto recomputed_model = dropout_model(true, Variant{}, seed, 4);
  const int64_t plain = peak(*plain_model);
  const int64_t recomputed = peak(*recomputed_model);
  INFO("peak bytes: plain " << plain << ", recomputed " << recomputed);
  CHECK(recomputed < plain / 2);
}

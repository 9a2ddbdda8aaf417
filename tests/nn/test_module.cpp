// nn/ Module: parameter and submodule registration, state_dict names, tied weights, zero_grad,
// train/eval (and EvalModeGuard), moving to a device in place, sharding metadata, and bad registrations.
#include "autograd/engine.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

// Two parameters registered directly (no layer op needed): a stand-in for fc1/fc2.
struct Affine : Module {
  Tensor weight, bias;
  Affine(int64_t in, int64_t out) {
    weight = register_parameter("weight", Tensor::full({out, in}, 0.5), Sharding{0});
    bias = register_parameter("bias", Tensor::zeros({out}));
  }
};

struct Block : Module {
  std::shared_ptr<Affine> fc1, fc2;
  Tensor scale;
  Block() {
    fc1 = register_module("fc1", std::make_shared<Affine>(4, 8));
    scale = register_parameter("scale", Tensor::ones({8}));  // registered between the submodules
    fc2 = register_module("fc2", std::make_shared<Affine>(8, 4));
  }
};

struct Model : Module {
  Tensor embedding;
  std::shared_ptr<ModuleList<Block>> layers;
  Model(int n_layers) {
    embedding = register_parameter("embedding", Tensor::zeros({10, 4}));
    layers = register_module("layers", std::make_shared<ModuleList<Block>>());
    for (int i = 0; i < n_layers; ++i) layers->push_back(std::make_shared<Block>());
  }
};

std::vector<std::string> names_of(const std::vector<Parameter>& parameters) {
  std::vector<std::string> names;
  for (const Parameter& p : parameters) names.push_back(p.name);
  return names;
}

}  // namespace

TEST_CASE("named_parameters: dotted state_dict names in registration order", "[nn][module]") {
  const Model model(2);
  // Own parameters first, then each submodule's, depth first.
  CHECK(names_of(model.named_parameters()) ==
        std::vector<std::string>{"embedding",
                                 "layers.0.scale", "layers.0.fc1.weight", "layers.0.fc1.bias", "layers.0.fc2.weight",
                                 "layers.0.fc2.bias",
                                 "layers.1.scale", "layers.1.fc1.weight", "layers.1.fc1.bias", "layers.1.fc2.weight",
                                 "layers.1.fc2.bias"});
  // The entries are the modules' own tensor handles, marked as trainable leaves.
  const std::vector<Parameter> parameters = model.named_parameters();
  CHECK(parameters[0].tensor.is_same(model.embedding));
  CHECK(parameters[2].tensor.is_same((*model.layers)[0].fc1->weight));
  for (const Parameter& p : parameters) {
    INFO(p.name);
    CHECK(p.tensor.requires_grad());
    CHECK(p.tensor.is_leaf());
  }
  const std::vector<Tensor> tensors = model.parameters();
  REQUIRE(tensors.size() == parameters.size());
  for (size_t i = 0; i < tensors.size(); ++i) CHECK(tensors[i].is_same(parameters[i].tensor));
  // A submodule lists its own parameters without the parent's prefix.
  CHECK(names_of((*model.layers)[1].named_parameters()) ==
        std::vector<std::string>{"scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  CHECK(model.layers->size() == 2);
  CHECK(model.children().size() == 1);
  CHECK(model.children()[0].first == "layers");
}

TEST_CASE("named_parameters: a tied tensor is listed once, under its first name", "[nn][module]") {
  struct Tied : Module {
    Tensor shared = Tensor::zeros({3});
    Tied() {
      register_parameter("input", shared);
      register_module("inner", std::make_shared<Affine>(2, 2));
      register_parameter("output", shared);
    }
  };
  const Tied tied;
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"input", "inner.weight", "inner.bias"});
  // The same submodule under two names is also listed once.
  Module twice;
  const auto affine = std::make_shared<Affine>(2, 3);
  twice.register_module("a", affine);
  twice.register_module("b", affine);
  CHECK(names_of(twice.named_parameters()) == std::vector<std::string>{"a.weight", "a.bias"});
}

TEST_CASE("sharding metadata travels with each parameter", "[nn][module]") {
  const Model model(1);
  const std::vector<Parameter> parameters = model.named_parameters();
  CHECK(parameters[0].sharding.replicated());            // embedding
  CHECK(parameters[2].name == "layers.0.fc1.weight");
  CHECK(parameters[2].sharding.dim == 0);                // split along the output dim
  CHECK_FALSE(parameters[2].sharding.replicated());
  CHECK(parameters[2].sharding.full_shape({8, 4}, 4) == Shape{32, 4});
  CHECK(Sharding{1}.full_shape({8, 4}, 2) == Shape{8, 8});
  CHECK(Sharding{}.full_shape({8, 4}, 4) == Shape{8, 4});  // replicated: each rank has it all
  CHECK(contains(error_message([] { Sharding{2}.full_shape({8, 4}, 2); }), "split dim 2 out of range"));
  CHECK(contains(error_message([] { Sharding{0}.full_shape({8, 4}, 0); }), "group size must be positive"));
  Module m;
  CHECK(contains(error_message([&] { m.register_parameter("w", Tensor::zeros({3}), Sharding{1}); }),
                 "cannot be split along dim 1"));
}

TEST_CASE("zero_grad drops every parameter's gradient", "[nn][module]") {
  const Model model(2);
  Tensor loss = sum(model.embedding);
  for (const std::shared_ptr<Block>& block : *model.layers)
    loss = add(loss, add(add(sum(block->fc1->weight), sum(mul(block->scale, block->fc1->bias))),
                         add(sum(block->fc2->weight), sum(block->fc2->bias))));
  backward(loss);
  for (const Parameter& p : model.named_parameters()) {
    INFO(p.name);
    CHECK(p.tensor.grad().defined());
  }
  model.zero_grad();
  for (const Parameter& p : model.named_parameters()) {
    INFO(p.name);
    CHECK_FALSE(p.tensor.grad().defined());
  }
}

TEST_CASE("train and eval reach every submodule", "[nn][module]") {
  Model model(2);
  CHECK(model.is_training());
  model.eval();
  CHECK_FALSE(model.is_training());
  CHECK_FALSE(model.layers->is_training());
  CHECK_FALSE((*model.layers)[1].fc2->is_training());
  (*model.layers)[0].train();  // a subtree can be switched alone
  CHECK((*model.layers)[0].fc1->is_training());
  CHECK_FALSE((*model.layers)[1].fc1->is_training());
  model.train();
  CHECK((*model.layers)[1].fc1->is_training());
}

TEST_CASE("EvalModeGuard: eval inside the scope, the previous mode after it", "[nn][module]") {
  Model model(2);
  SECTION("training comes back when the scope ends") {
    {
      EvalModeGuard eval(model);
      CHECK_FALSE(model.is_training());
      CHECK_FALSE((*model.layers)[1].fc2->is_training());
    }
    CHECK(model.is_training());
    CHECK((*model.layers)[1].fc2->is_training());
  }
  SECTION("training comes back when an exception leaves the scope") {
    struct Thrown {};
    CHECK_THROWS_AS(([&] {
                      EvalModeGuard eval(model);
                      CHECK_FALSE(model.is_training());
                      throw Thrown{};
                    }()),
                    Thrown);
    CHECK(model.is_training());
    CHECK((*model.layers)[0].fc1->is_training());
  }
  SECTION("a module already in eval mode stays in eval mode") {
    model.eval();
    { EvalModeGuard eval(model); }
    CHECK_FALSE(model.is_training());
    CHECK_FALSE((*model.layers)[0].fc1->is_training());
  }
}

TEST_CASE("to(device) to the device the parameters are on changes nothing", "[nn][module]") {
  const Model model(1);
  const auto storage = model.embedding.storage();
  model.to(Device::cpu());
  CHECK(model.embedding.storage() == storage);
}

TEST_CASE("bad registrations are refused with the offending name", "[nn][module]") {
  Module m;
  m.register_parameter("w", Tensor::zeros({2}));
  CHECK(contains(error_message([&] { m.register_parameter("w", Tensor::zeros({2})); }),
                 "a parameter named 'w' is already registered"));
  CHECK(contains(error_message([&] { m.register_module("w", std::make_shared<Module>()); }),
                 "a parameter named 'w' is already registered"));
  m.register_module("sub", std::make_shared<Module>());
  CHECK(contains(error_message([&] { m.register_parameter("sub", Tensor::zeros({2})); }),
                 "a submodule named 'sub' is already registered"));
  CHECK(contains(error_message([&] { m.register_parameter("a.b", Tensor::zeros({2})); }), "invalid name 'a.b'"));
  CHECK(contains(error_message([&] { m.register_parameter("", Tensor::zeros({2})); }), "invalid name ''"));
  CHECK(contains(error_message([&] { m.register_parameter("u", Tensor()); }), "'u' is an undefined tensor"));
  CHECK(contains(error_message([&] { m.register_module("null", std::shared_ptr<Module>()); }), "'null' is null"));
  const Tensor x = Tensor::ones({2}).set_requires_grad(true);
  CHECK(contains(error_message([&] { m.register_parameter("y", mul(x, 2.0)); }), "is the output of an op"));
  CHECK(contains(error_message([&] { m.register_parameter("ids", Tensor::zeros({2}, DType::i64)); }),
                 "not floating point"));
}

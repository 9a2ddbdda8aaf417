// nn/ compute copies (nn/compute_copy.h) on the CPU: a parameter in its own dtype is itself; a cached copy
// is the cast's bits and is served until a write; every writer of parameters makes the next use cast
// again (or, the optimizers, writes the copy itself); training steps of a small MEGALODON in bf16 give
// bitwise the losses, gradients and parameters of casts at every use, with no cast after the first step;
// a checkpoint loaded mid-run is cast again.
#include <cmath>
#include <filesystem>
#include <memory>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/random.h"
#include "dist/parallel_state.h"
#include "nn/checkpoint.h"
#include "nn/compute_copy.h"
#include "nn/grad_buckets.h"
#include "nn/grad_clip.h"
#include "nn/linear.h"
#include "nn/megalodon.h"
#include "nn/sgd.h"
#include "nn/weights.h"
#include "nn/zero_adamw.h"
#include "ops/ops.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

// The bits of a tensor's values (bf16 or f32) as f32 numbers, which compare bit for bit except NaN.
std::vector<float> values_of(const Tensor& t) { return t.to_vector<float>(); }

// `parameter` cast to bf16 now, by copy_ (what a cast at use computes).
std::vector<float> cast_now(const Tensor& parameter) {
  Tensor out = Tensor::empty(parameter.shape(), DType::bf16, parameter.device());
  copy_(out, parameter);
  return values_of(out);
}

// How many casts `f` made through compute_copy.
template <class F>
int64_t casts_during(F&& f) {
  const int64_t before = compute_copy_casts();
  f();
  return compute_copy_casts() - before;
}

}  // namespace

TEST_CASE("compute copy: a parameter in its own dtype is itself, with no copy (f32 compute, f64 gradcheck)",
          "[nn][compute_copy]") {
  for (const DType dtype : {DType::f32, DType::f64}) {
    const Tensor p = Tensor::ones({3}, dtype).set_requires_grad(true);
    CHECK(casts_during([&] { CHECK(compute_copy(p, dtype).is_same(p)); }) == 0);
    CHECK(p.impl()->compute_copy == nullptr);
  }
}

TEST_CASE("compute copy: cast once, then served until the parameter is written", "[nn][compute_copy]") {
  const Tensor p = random_tensor({4, 5}, fresh_seed(), DType::f32).set_requires_grad(true);
  Tensor first;
  CHECK(casts_during([&] { first = compute_copy(p, DType::bf16); }) == 1);
  CHECK(first.dtype() == DType::bf16);
  CHECK(values_of(first) == cast_now(p));
  CHECK(first.requires_grad());
  CHECK(first.grad_fn()->name() == "compute_copy");
  Tensor second;
  CHECK(casts_during([&] { second = compute_copy(p, DType::bf16); }) == 0);
  CHECK(second.storage() == first.storage());
  CHECK_FALSE(second.is_same(first));  // a node of its own per use
  {
    NoGradGuard no_grad;
    CHECK_FALSE(compute_copy(p, DType::bf16).requires_grad());
  }
  // A cast into a new tensor: the one a graph may still hold for backward keeps its values.
  const std::vector<float> before = values_of(first);
  fill_(p, 0.25);
  Tensor third;
  CHECK(casts_during([&] { third = compute_copy(p, DType::bf16); }) == 1);
  CHECK(third.storage() != first.storage());
  CHECK(values_of(first) == before);
  CHECK(values_of(third) == std::vector<float>(20, 0.25f));
}

TEST_CASE("compute copy: every writer of a parameter makes the next use cast again, or writes the copy",
          "[nn][compute_copy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  InitOptions init;
  init.generator = &gen;
  auto layer = std::make_shared<Linear>(6, 4, true, init);
  const Tensor w = layer->weight();
  const Tensor x = random_tensor({3, 6}, seed + 1, DType::bf16);
  // One training-like use: forward in bf16 and backward, so .grad is set for the optimizers.
  const std::function<void()> plain_use = [&] {
    layer->zero_grad();
    backward(sum(layer->forward(x)));
  };
  auto writes = [&](const std::string& writer, int64_t casts_after, const std::function<void()>& write,
                    const std::function<void()>& use) {
    INFO(writer);
    use();  // the copy is current
    CHECK(casts_during(use) == 0);
    const std::vector<float> old_copy = cast_now(w);
    write();
    REQUIRE(cast_now(w) != old_copy);  // the writer changed the weight
    // The next use casts again (or, after an optimizer that wrote the copy, does not), and what it
    // serves is the cast of the new values.
    CHECK(casts_during([&] { CHECK(values_of(compute_copy(w, DType::bf16)) == cast_now(w)); }) == casts_after);
  };
  writes("copy_", 1, [&] { copy_(w, add(w, 1.0)); }, plain_use);
  writes("fill_", 1, [&] { fill_(w, 0.5); }, plain_use);
  writes("add_", 1, [&] { add_(w, Tensor::ones(w.shape())); }, plain_use);
  writes("uniform_", 1, [&] { uniform_(w, -1, 1, gen); }, plain_use);
  writes("normal_", 1, [&] { normal_(w, 0, 1, gen); }, plain_use);
  writes("truncated_normal_", 1, [&] { truncated_normal_(w, 0, 1, 2, gen); }, plain_use);
  writes("load_weights", 1, [&] {
    Weights weights;
    for (const Parameter& p : layer->named_parameters()) weights.tensors.emplace_back(p.name, mul(p.tensor, -1.0));
    load_weights(weights, *layer, "test weights");
  }, plain_use);
  writes("replace_values (Module::to, tensor parallelism)", 1, [&] { replace_values(w, add(w, -1.0), Device::cpu()); },
         plain_use);
  writes("SGD", 1, [&] { SGD(layer->named_parameters(), {.lr = 0.1}).step(); }, plain_use);
  writes("AdamW (writes the copy in its pass)", 0, [&] { AdamW(layer->named_parameters(), {.lr = 0.1}).step(); },
         plain_use);
  // A write, then an AdamW step skipped for a non-finite gradient norm: the skipped step writes neither the
  // master nor the copy, so the copy made stale by the write stays stale (finish_update) and is cast again.
  writes("copy_, then an AdamW step skipped on a NaN norm", 1, [&] {
    copy_(w, add(w, 2.0));
    AdamW(layer->named_parameters(), {.lr = 0.1}).step_unless_nonfinite(Tensor::full({1}, std::nan(""), DType::f64));
  }, plain_use);
  // ZeRO-1 on a one-rank group: the parameters move into the flat buffer (new storage: cast again), then
  // the update and the all-gather write them and the copies are cast again in one pass, not at use.
  const auto parallel = dist::ParallelState::single_process();
  GradBuckets buckets(layer->named_parameters(), parallel->data_chunk(), 1 << 20, true);
  CHECK(casts_during([&] { CHECK(values_of(compute_copy(w, DType::bf16)) == cast_now(w)); }) == 1);
  ZeroAdamW zero(buckets, {.lr = 0.1});
  const std::function<void()> bucketed_use = [&] {
    buckets.zero_grad();
    backward(sum(layer->forward(x)));
    buckets.finish();
  };
  writes("ZeroAdamW (casts the copies after its all-gather)", 0, [&] { zero.step(); }, bucketed_use);
}

namespace {

// A small MEGALODON with every cached path: the tied head, SwiGLU, the FFN's alpha, affine norms, dropout.
MegalodonConfig cached_paths_config(bool checkpointing) {
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.share_embedding = true;
  c.rescale_nffn = true;
  c.dropout = c.hidden_dropout = c.attention_dropout = 0.1;
  c.activation_checkpointing = checkpointing;
  return c;
}

// What a run of training steps gives, step by step: the loss, every gradient and every parameter after
// the update (as f32 values, compared bit for bit), and the casts each step made through compute_copy.
struct Trace {
  std::vector<float> losses;
  std::vector<std::vector<float>> grads, parameters;
  std::vector<int64_t> casts;
};

Trace train(const MegalodonConfig& config, uint64_t seed, int steps) {
  manual_seed(seed);  // dropout draws the same masks in every run
  Generator gen(seed);
  InitOptions init;
  init.generator = &gen;
  Megalodon model(config, init);
  model.set_compute_dtype(DType::bf16);
  AdamW optimizer(model.named_parameters(), {.lr = 1e-2, .weight_decay = 0.1});
  Trace trace;
  for (int step = 0; step < steps; ++step) {
    const Tensor tokens = random_ids({2, 21}, config.vocab_size, seed + 10 + static_cast<uint64_t>(step));
    const int64_t before = compute_copy_casts();
    model.zero_grad();
    const Tensor loss =
        Megalodon::loss(model.forward(contiguous(slice(tokens, 1, 0, 20))), contiguous(slice(tokens, 1, 1, 21)));
    backward(loss);
    trace.casts.push_back(compute_copy_casts() - before);
    trace.losses.push_back(static_cast<float>(loss.item()));
    for (const Parameter& p : model.named_parameters()) trace.grads.push_back(values_of(p.tensor.grad()));
    clip_grad_norm_(model.named_parameters(), 1.0);
    optimizer.step();
    for (const Parameter& p : model.named_parameters()) {
      trace.parameters.push_back(values_of(p.tensor));
      // A copy the update wrote is the cast of the updated master.
      if (const auto& copy = p.tensor.impl()->compute_copy) CHECK(values_of(copy->values) == cast_now(p.tensor));
    }
  }
  return trace;
}

}  // namespace

TEST_CASE("compute copy: bf16 training steps are bitwise those of casts at every use, and cast nothing after "
          "the first",
          "[nn][compute_copy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (const bool checkpointing : {false, true}) {
    INFO("activation checkpointing " << checkpointing);
    const MegalodonConfig config = cached_paths_config(checkpointing);
    const int steps = 4;
    const Trace cached = train(config, seed, steps);
    Trace every_use;
    {
      CastEveryUseGuard cast_every_use;
      every_use = train(config, seed, steps);
    }
    CHECK(cached.losses == every_use.losses);
    CHECK(cached.grads == every_use.grads);
    CHECK(cached.parameters == every_use.parameters);
    // Casts at every use: the same number every step. The cache: each parameter once in the first step
    // (fewer than its uses: beta is read twice, and a checkpointed block runs twice), none after.
    const int64_t uses = every_use.casts[0];
    CHECK(uses > 0);
    CHECK(cached.casts[0] > 0);
    CHECK(cached.casts[0] < uses);
    for (int step = 1; step < steps; ++step) {
      INFO("step " << step);
      CHECK(every_use.casts[step] == uses);
      CHECK(cached.casts[step] == 0);
    }
  }
}

TEST_CASE("compute copy: a checkpoint loaded into a model mid-run is cast again", "[nn][compute_copy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto dir = scratch("compute_copy");
  const std::string path = (dir / "checkpoint.h5").string();
  const MegalodonConfig config = cached_paths_config(false);
  auto make = [&](uint64_t init_seed) {
    Generator gen(init_seed);
    InitOptions init;
    init.generator = &gen;
    auto model = std::make_unique<Megalodon>(config, init);
    model->set_compute_dtype(DType::bf16);
    return model;
  };
  const Tensor tokens = random_ids({2, 20}, config.vocab_size, seed + 1);
  auto loss_of = [&](Megalodon& model) {
    NoGradGuard no_grad;
    EvalModeGuard eval(model);
    return static_cast<float>(Megalodon::loss(model.forward(tokens), tokens).item());
  };
  // The run: copies cast, a step's update written into them, then the checkpoint of another model loaded.
  const auto run = make(seed);
  AdamW optimizer(run->named_parameters(), {.lr = 1e-2});
  backward(Megalodon::loss(run->forward(tokens), tokens));
  optimizer.step();
  loss_of(*run);
  const auto other = make(seed + 2);
  AdamW other_optimizer(other->named_parameters());
  save_checkpoint(path, *other, other_optimizer, TrainingState{});
  load_checkpoint(path, *run, optimizer);
  const int64_t parameters = static_cast<int64_t>(run->named_parameters().size());
  float loaded = 0;
  const int64_t casts = casts_during([&] { loaded = loss_of(*run); });
  CHECK(casts > 0);
  CHECK(casts <= parameters);
  const auto fresh = make(seed + 3);
  load_checkpoint_model(path, *fresh);
  CHECK(loaded == loss_of(*fresh));
  CHECK(loaded == loss_of(*other));
  std::filesystem::remove_all(dir);
}

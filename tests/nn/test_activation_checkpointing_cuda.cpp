// Activation recomputation (config.activation_checkpointing, autograd/recompute.h) on CUDA: a
// 6-layer MEGALODON model with every dropout on, over a 2048-token sequence, gives the gradients of
// the plain model (the replayed dropout masks included) with each parameter's hook firing once,
// and its training step peaks at well under half the memory.
#include <map>
#include <memory>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/allocator.h"
#include "nn/megalodon.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

MGL_CUDA_TEST_FILE

namespace {

// Several layers and a long-ish sequence, so that the blocks' activations dominate the memory of a
// training step (the logits, the parameters and their gradients are small next to them).
MegalodonConfig deep_config(bool checkpointing) {
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.num_layers = 6;
  c.model_dim = 128;
  c.num_heads = 2;
  c.z_dim = 64;
  c.value_dim = 256;
  c.ffn_hidden_dim = 256;
  c.norm_num_groups = 16;
  c.cema_ndim = 16;
  c.vocab_size = 256;
  c.chunk_size = 256;
  c.dropout = 0.1;
  c.hidden_dropout = 0.1;
  c.attention_dropout = 0.1;
  c.activation_checkpointing = checkpointing;
  return c;
}

// The same f32 parameters for every `seed` (its zero-initialised ones perturbed, so that every
// gradient path carries signal), moved to the GPU.
std::unique_ptr<nn::Megalodon> gpu_model(bool checkpointing, uint64_t seed) {
  Generator gen(seed);
  nn::InitOptions options;
  options.generator = &gen;
  auto model = std::make_unique<nn::Megalodon>(deep_config(checkpointing), options);
  {
    NoGradGuard no_grad;
    for (const Tensor& p : model->parameters()) add_(p, mul(rand(p.shape(), DType::f32, Device::cpu(), gen), 0.2));
  }
  model->to(Device::cuda(0));
  return model;
}

struct Step {
  Tensor logits, loss;
  std::map<std::string, Tensor> grads;
  // Shared with the hooks, which stay registered on the parameters after the step.
  std::shared_ptr<std::map<std::string, int>> hook_calls = std::make_shared<std::map<std::string, int>>();
  int64_t peak_bytes = 0;  // above what was allocated before the step
};

// One training step from the default generator's stream `stream`, measuring its peak memory.
Step train_step(const nn::Megalodon& model, const Tensor& ids, const Tensor& targets, uint64_t stream) {
  const Device gpu = Device::cuda(0);
  Step step;
  model.zero_grad();
  for (const nn::Parameter& p : model.named_parameters())
    p.tensor.register_post_accumulate_grad_hook(
        [calls = step.hook_calls, name = p.name](const Tensor&) { ++(*calls)[name]; });
  const int64_t base = memory_stats(gpu).current_bytes;
  reset_peak_memory(gpu);
  manual_seed(stream);
  step.logits = model.forward(ids);
  step.loss = nn::Megalodon::loss(step.logits, targets);
  backward(step.loss);
  step.peak_bytes = memory_stats(gpu).peak_bytes - base;
  for (const nn::Parameter& p : model.named_parameters()) step.grads[p.name] = p.tensor.grad();
  return step;
}

}  // namespace

TEST_CASE("activation checkpointing on CUDA: the same gradients for much less peak memory",
          "[cuda][nn][megalodon][recompute]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const MegalodonConfig config = deep_config(true);
  const Tensor ids = to(random_ids({2, 2048}, config.vocab_size, seed + 1), Device::cuda(0));
  const Tensor targets = to(random_ids({2, 2048}, config.vocab_size, seed + 2), Device::cuda(0));
  const auto plain_model = gpu_model(false, seed);
  const auto recomputed_model = gpu_model(true, seed);
  const Step plain = train_step(*plain_model, ids, targets, seed + 3);
  const Step recomputed = train_step(*recomputed_model, ids, targets, seed + 3);

  // The same kernels on the same values in the same order: equal up to f32 rounding at most.
  CHECK(relative_error(recomputed.logits, plain.logits) <= 1e-6);
  CHECK(relative_error(recomputed.loss, plain.loss) <= 1e-6);
  for (const auto& [name, g] : plain.grads) {
    INFO(name);
    REQUIRE(g.defined());
    REQUIRE(recomputed.grads.at(name).defined());
    CHECK(relative_error(recomputed.grads.at(name), g) <= 1e-6);
    CHECK(plain.hook_calls->at(name) == 1);
    CHECK(recomputed.hook_calls->at(name) == 1);
  }
  // Dropout acts: another stream gives another loss (so the agreement above needs the replay).
  CHECK(relative_error(train_step(*recomputed_model, ids, targets, seed + 4).loss, plain.loss) > 1e-6);

  // Without recomputation all six blocks' activations are alive at the start of backward; with it,
  // the six block inputs and one block's activations at a time.
  INFO("peak bytes: plain " << plain.peak_bytes << ", recomputed " << recomputed.peak_bytes);
  CHECK(recomputed.peak_bytes < plain.peak_bytes / 2);
}

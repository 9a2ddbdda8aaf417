// nn/ training checkpoints of a model and optimizer on CUDA: saving reads the device tensors, loading
// writes into device tensors; every parameter and moment comes back bit for bit, and a checkpoint saved
// on the GPU loads into a CPU model.
#include <filesystem>
#include <memory>

#include "autograd/engine.h"
#include "nn/checkpoint.h"
#include "ops/ops.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

struct ModelAndOptimizer {
  std::shared_ptr<Megalodon> model;
  std::unique_ptr<AdamW> optimizer;
};

ModelAndOptimizer build(uint64_t seed, const Device& device) {
  Generator gen(seed);
  InitOptions init;
  init.generator = &gen;
  auto model = std::make_shared<Megalodon>(MegalodonConfig::preset("test"), init);
  model->to(device);  // before building the optimizer: its state is created on the parameters' device
  auto optimizer = std::make_unique<AdamW>(model->named_parameters(), AdamWOptions{.lr = 1e-2});
  return {model, std::move(optimizer)};
}

}  // namespace

TEST_CASE("checkpoint: CUDA model and optimizer state round trip bit for bit", "[cuda][nn][checkpoint]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto dir = scratch("checkpoint_cuda");
  const Device gpu = Device::cuda(0);
  ModelAndOptimizer trained = build(seed, gpu);
  for (int step = 0; step < 2; ++step) {
    const Tensor tokens = random_ids({2, 13}, 50, seed + step);
    Tensor ids = Tensor::empty({2, 12}, tokens.dtype(), gpu), targets = Tensor::empty({2, 12}, tokens.dtype(), gpu);
    copy_(ids, slice(tokens, 1, 0, 12));
    copy_(targets, slice(tokens, 1, 1, 13));
    trained.optimizer->zero_grad();
    backward(Megalodon::loss(trained.model->forward(ids), targets));
    trained.optimizer->step();
  }
  const std::string path = (dir / "ckpt.h5").string();
  save_checkpoint(path, *trained.model, *trained.optimizer, {.step = 2, .tokenizer = "test"});

  for (const Device& device : {gpu, Device::cpu()}) {
    INFO("loaded on " << device.str());
    ModelAndOptimizer fresh = build(seed + 1, device);
    CHECK(load_checkpoint(path, *fresh.model, *fresh.optimizer).step == 2);
    const std::vector<Parameter> a = trained.model->named_parameters(), b = fresh.model->named_parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(a[i].name);
      CHECK(b[i].tensor.device() == device);
      CHECK(a[i].tensor.to_vector<float>() == b[i].tensor.to_vector<float>());
      CHECK(trained.optimizer->exp_avg(i).to_vector<float>() == fresh.optimizer->exp_avg(i).to_vector<float>());
      CHECK(trained.optimizer->exp_avg_sq(i).to_vector<float>() == fresh.optimizer->exp_avg_sq(i).to_vector<float>());
      CHECK(trained.optimizer->step_count(i) == fresh.optimizer->step_count(i));
    }
  }
  std::filesystem::remove_all(dir);
}

// The MEGALODON model on CUDA against the f64 CPU reference: logits, loss and every parameter's
// gradient for a 2-layer model in f32 and bf16 mixed precision, with lengths that are not multiples
// of the kernels' block sizes, through forward + loss and through forward_loss (the fused head and
// loss of training); and streaming = whole on the GPU.
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "nn/megalodon.h"
#include "nn/megalodon_models.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

MGL_CUDA_TEST_FILE

namespace {

struct Run {
  Tensor logits, loss;
  std::vector<nn::Parameter> parameters;
};

// The logits and the loss of them (fused = false), or the training loss of forward_loss (no logits).
Run run(nn::Megalodon& model, const Tensor& ids, const Tensor& targets, bool fused = false) {
  Run r;
  const Device device = model.named_parameters()[0].tensor.device();
  if (fused) {
    r.loss = model.forward_loss(to(ids, device), targets);
  } else {
    r.logits = model.forward(to(ids, device));
    r.loss = nn::Megalodon::loss(r.logits, to(targets, device));
  }
  backward(r.loss);
  r.parameters = model.named_parameters();
  return r;
}

}  // namespace

TEST_CASE("megalodon: CUDA is as accurate as an independent implementation in f32 and bf16",
          "[cuda][nn][megalodon]") {
  // A whole model accumulates the rounding of every op, and how much depends on the model's
  // conditioning, so its error against f64 can exceed one kernel's tolerance in any correct
  // implementation (our CPU ops in f32 land near 2e-5 on this model). The rule (FlashAttention's):
  // the GPU's error against the f64 reference may not exceed twice that of an independent
  // implementation in the same dtype — our CPU ops — or the per-kernel tolerance, whichever is larger.
  const MegalodonConfig config = small_config();
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t L : {37, 48}) {  // 2 chunks + a partial one; 3 chunks
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(dtype) << " L = " << L << " seed " << seed);
      const Tensor ids = random_ids({2, L}, config.vocab_size, seed + 2);
      const Tensor targets = random_ids({2, L}, config.vocab_size, seed + 3);
      for (const bool fused : {false, true}) {  // forward + loss; forward_loss (the training step's)
        INFO((fused ? "forward_loss" : "forward + loss"));
        const auto reference = reference_model(config, seed);
        const auto cpu_model = copy_model(*reference, Device::cpu(), dtype);
        const auto gpu_model = copy_model(*reference, Device::cuda(0), dtype);
        const Run want = run(*reference, ids, targets, fused);
        const Run cpu = run(*cpu_model, ids, targets, fused);
        const Run gpu = run(*gpu_model, ids, targets, fused);
        auto check = [&](const std::string& what, const Tensor& g, const Tensor& c, const Tensor& w) {
          const double gpu_error = relative_error(g, w), cpu_error = relative_error(c, w);
          INFO(what << ": GPU error " << gpu_error << ", CPU error " << cpu_error);
          CHECK(gpu_error <= std::max(2.0 * cpu_error, tolerance_for(dtype)));
        };
        if (!fused) check("logits", gpu.logits, cpu.logits, want.logits);
        check("loss", gpu.loss, cpu.loss, want.loss);
        for (size_t i = 0; i < want.parameters.size(); ++i)
          check(want.parameters[i].name, gpu.parameters[i].tensor.grad(), cpu.parameters[i].tensor.grad(),
                want.parameters[i].tensor.grad());
      }
    }
  }
}

TEST_CASE("megalodon: streaming on CUDA equals the whole-sequence forward", "[cuda][nn][megalodon]") {
  const MegalodonConfig config = small_config();
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Generator gen(seed);
  nn::InitOptions options;
  options.generator = &gen;
  options.device = Device::cuda(0);
  nn::Megalodon model(config, options);
  model.eval();
  NoGradGuard no_grad;
  const Tensor ids = to(random_ids({1, 40}, config.vocab_size, seed + 1), Device::cuda(0));
  const Tensor whole = model.forward(slice(ids, 1, 0, 32));  // two whole chunks
  nn::ModelState state;
  std::vector<Tensor> parts;
  for (int64_t t = 0; t < 40; t += (t < 20 ? 7 : 1)) {
    const int64_t end = std::min<int64_t>(40, t + (t < 20 ? 7 : 1));
    nn::ModelState next;
    parts.push_back(model.forward(slice(ids, 1, t, end), &state, &next));
    state = next;
  }
  const Tensor streamed = concat(parts, 1);
  CHECK(relative_error(slice(streamed, 1, 0, 32), whole) <= 1e-5);
}

// The MEGALODON model on CUDA against the f64 CPU reference: logits, loss and every parameter's
// gradient for a 2-layer model in f32 (1e-5) and bf16 mixed precision (1e-2), with
// lengths that are not multiples of the kernels' block sizes; and streaming = whole on the GPU.
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "nn/megalodon.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;
using nn::MegalodonConfig;

MGL_CUDA_TEST_FILE

namespace {

// A small model with every path active: 2 layers, 2 heads, SwiGLU, chunk 16.
MegalodonConfig small_config() {
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.model_dim = 64;
  c.z_dim = 32;
  c.value_dim = 48;
  c.ffn_hidden_dim = 96;
  c.norm_num_groups = 8;
  c.cema_ndim = 16;
  c.vocab_size = 301;
  c.chunk_size = 16;
  return c;
}

// Copies the parameters of `from` into `to` (same names), perturbing none.
void copy_parameters(const nn::Module& from, const nn::Module& to) {
  NoGradGuard no_grad;
  const auto source = from.named_parameters();
  const auto target = to.named_parameters();
  REQUIRE(source.size() == target.size());
  for (size_t i = 0; i < source.size(); ++i) copy_(target[i].tensor, source[i].tensor);
}

struct Run {
  Tensor logits, loss;
  std::vector<nn::Parameter> parameters;
};

Run run(nn::Megalodon& model, const Tensor& ids, const Tensor& targets) {
  Run r;
  r.logits = model.forward(to(ids, model.named_parameters()[0].tensor.device()));
  r.loss = nn::Megalodon::loss(r.logits, to(targets, r.logits.device()));
  backward(r.loss);
  r.parameters = model.named_parameters();
  return r;
}

}  // namespace

TEST_CASE("megalodon: CUDA matches the f64 CPU reference in f32 and bf16", "[cuda][nn][megalodon]") {
  const MegalodonConfig config = small_config();
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t L : {37, 48}) {  // 2 chunks + a partial one; 3 chunks
      const uint64_t seed = fresh_seed();
      INFO(dtype_name(dtype) << " L = " << L << " seed " << seed);
      Generator gen(seed);
      nn::InitOptions f64;
      f64.dtype = DType::f64;
      f64.generator = &gen;
      nn::Megalodon reference(config, f64);
      reference.set_compute_dtype(DType::f64);
      {
        // Non-zero norm scales, biases and q/k affine, so every gradient path carries signal.
        NoGradGuard no_grad;
        Generator noise(seed + 1);
        for (const nn::Parameter& p : reference.named_parameters())
          add_(p.tensor, mul(rand(p.tensor.shape(), DType::f64, Device::cpu(), noise), 0.2));
      }
      nn::Megalodon gpu(config);  // f32 master parameters
      copy_parameters(reference, gpu);
      gpu.to(Device::cuda(0));
      gpu.set_compute_dtype(dtype);

      const Tensor ids = random_ids({2, L}, config.vocab_size, seed + 2);
      const Tensor targets = random_ids({2, L}, config.vocab_size, seed + 3);
      const Run want = run(reference, ids, targets);
      const Run got = run(gpu, ids, targets);
      const double tolerance = tolerance_for(dtype);
      CHECK(relative_error(got.logits, want.logits) <= tolerance);
      CHECK(relative_error(got.loss, want.loss) <= tolerance);
      for (size_t i = 0; i < want.parameters.size(); ++i) {
        const double error = relative_error(got.parameters[i].tensor.grad(), want.parameters[i].tensor.grad());
        INFO(want.parameters[i].name << ": relative error " << error);
        CHECK(error <= tolerance);
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

// nn/ compute copies (nn/compute_copy.h) on CUDA: ZeroAdamW's one-launch refresh casts every stale copy
// bit for bit; bf16 training steps of a small MEGALODON on the GPU are bitwise those of casts at every use,
// and, counted by the kernel profiler (apps/lib/kernel_profiler.h), a step after the first launches
// exactly as many f32 -> bf16 copy kernels fewer as casts at use make: none of the parameters' is left.
#include "apps/lib/kernel_profiler.h"
#include "autograd/engine.h"
#include "cuda/multi_tensor.h"
#include "nn/adamw.h"
#include "nn/compute_copy.h"
#include "nn/megalodon.h"
#include "nn/megalodon_models.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

std::vector<float> cast_now(const Tensor& parameter) {
  Tensor out = Tensor::empty(parameter.shape(), DType::bf16, parameter.device());
  copy_(out, parameter);
  return out.to_vector<float>();
}

}  // namespace

TEST_CASE("compute copy cuda: one launch casts every stale copy again, bit for bit", "[cuda][nn][compute_copy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t chunk = cuda::kMultiTensorChunk;
  const std::vector<int64_t> sizes = {1, 300, chunk, 2 * chunk + 7};
  std::vector<Tensor> parameters;
  for (size_t k = 0; k < sizes.size(); ++k) {
    parameters.push_back(random_tensor({sizes[k]}, seed + k, DType::f32, -1, 1, Device::cuda(0)));
    parameters.back().set_requires_grad(true);
    if (k != 0) compute_copy(parameters.back(), DType::bf16);  // the first has no copy: left alone
  }
  for (size_t k = 0; k < sizes.size(); ++k)  // written as an all-gather writes: through the pointer
    copy_(parameters[k], random_tensor({sizes[k]}, seed + 10 + k, DType::f32, -3, 3, Device::cuda(0)));
  refresh_compute_copies(parameters);
  CHECK(parameters[0].impl()->compute_copy == nullptr);
  const int64_t casts = compute_copy_casts();
  for (size_t k = 1; k < sizes.size(); ++k) {
    INFO("parameter " << k << " of " << sizes[k]);
    CHECK(compute_copy(parameters[k], DType::bf16).to_vector<float>() == cast_now(parameters[k]));
  }
  CHECK(compute_copy_casts() == casts);  // every copy was current
}

namespace {

// f32 -> bf16 copies: copy_'s kernels with a bf16 destination and an f32 source, not accumulating.
int64_t f32_to_bf16_copies(const apps::KernelProfile& profile) {
  int64_t count = 0;
  for (const apps::KernelStats& row : profile.rows)
    if (contains(row.name, "copy_kernel<false") && contains(row.name, "__nv_bfloat16, float>")) count += row.count;
  return count;
}

struct Steps {
  std::vector<std::vector<float>> parameters;  // after the last step
  int64_t casts = 0;                            // compute_copy's, in the profiled (last) step
  int64_t copies = 0;                           // f32 -> bf16 copy kernels in the profiled step
};

// `steps` bf16 training steps on the GPU; the last one profiled.
Steps train(uint64_t seed, int steps) {
  MegalodonConfig config = small_config();
  config.share_embedding = true;
  config.rescale_nffn = true;
  Generator gen(seed);
  InitOptions init;
  init.generator = &gen;
  init.device = Device::cuda(0);
  Megalodon model(config, init);
  model.set_compute_dtype(DType::bf16);
  AdamW optimizer(model.named_parameters(), {.lr = 1e-2, .weight_decay = 0.1});
  apps::KernelProfiler profiler(Device::cuda(0));
  Steps out;
  for (int step = 0; step < steps; ++step) {
    const Tensor tokens =
        to(random_ids({2, 41}, config.vocab_size, seed + 10 + static_cast<uint64_t>(step)), Device::cuda(0));
    const bool profiled = step == steps - 1;
    const int64_t casts = compute_copy_casts();
    if (profiled) profiler.resume();
    model.zero_grad();
    backward(Megalodon::loss(model.forward(contiguous(slice(tokens, 1, 0, 40))), contiguous(slice(tokens, 1, 1, 41))));
    optimizer.step();
    if (profiled) {
      profiler.pause();
      out.casts = compute_copy_casts() - casts;
    }
  }
  out.copies = f32_to_bf16_copies(profiler.summary(1));
  for (const Parameter& p : model.named_parameters()) out.parameters.push_back(p.tensor.to_vector<float>());
  return out;
}

}  // namespace

TEST_CASE("compute copy cuda: bf16 training steps are bitwise those of casts at every use, without their casts",
          "[cuda][nn][compute_copy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Steps cached = train(seed, 3);
  Steps every_use;
  {
    CastEveryUseGuard cast_every_use;
    every_use = train(seed, 3);
  }
  CHECK(cached.parameters == every_use.parameters);
  INFO("f32 -> bf16 copies in the third step: cached " << cached.copies << ", casts at every use "
                                                       << every_use.copies << " (" << every_use.casts << " casts)");
  CHECK(cached.casts == 0);
  CHECK(every_use.casts > 0);
  CHECK(every_use.copies - cached.copies == every_use.casts);
}

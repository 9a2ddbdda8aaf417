// View and copy ops on CUDA against the CPU reference: reshape (view and copy), permute, slice,
// expand, unsqueeze/squeeze, contiguous, concat/split/stack, to() and casts to bf16, forward and
// backward, f32 and bf16.
#include "autograd/engine.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
using Function = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

void check_cuda_matches_cpu(const char* name, const Function& f, const std::vector<Shape>& shapes) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    std::vector<Tensor> inputs;
    for (size_t k = 0; k < shapes.size(); ++k)
      inputs.push_back(random_tensor(shapes[k], seed + k, DType::f32).set_requires_grad(true));
    std::string report;
    const double error = compare_cuda_to_cpu(f, inputs, dtype, &report);
    INFO(name << " " << dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}
}  // namespace

TEST_CASE("view ops: CUDA matches CPU, forward and backward", "[cuda][views]") {
  // Each result is multiplied by itself so that the backward is not just a copy of the seed.
  check_cuda_matches_cpu("reshape (view)", [](const std::vector<Tensor>& in) {
    const Tensor y = reshape(transpose(in[0], 0, 1), {9, -1, 2, 3});  // splits the last dim: a view
    return std::vector<Tensor>{mul(y, y)};
  }, {{7, 9, 6}});
  check_cuda_matches_cpu("reshape (copy)", [](const std::vector<Tensor>& in) {
    const Tensor y = reshape(transpose(in[0], 0, 2), {-1, 63});  // merges transposed dims: a copy
    return std::vector<Tensor>{mul(y, y)};
  }, {{7, 9, 6}});
  check_cuda_matches_cpu("permute + contiguous", [](const std::vector<Tensor>& in) {
    const Tensor y = contiguous(permute(in[0], {2, 0, 1}));
    return std::vector<Tensor>{mul(y, y)};
  }, {{5, 33, 17}});
  check_cuda_matches_cpu("slice with step", [](const std::vector<Tensor>& in) {
    const Tensor y = slice(slice(in[0], 1, -30, 31, 3), 0, 1, 300);
    return std::vector<Tensor>{mul(y, y)};
  }, {{37, 33}});
  check_cuda_matches_cpu("expand", [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{mul(expand(in[0], {3, 33, 17}), in[1])};
  }, {{33, 1}, {3, 33, 17}});
  check_cuda_matches_cpu("unsqueeze / squeeze", [](const std::vector<Tensor>& in) {
    const Tensor y = squeeze(unsqueeze(transpose(in[0], 0, 1), 1), 1);
    return std::vector<Tensor>{mul(y, y)};
  }, {{19, 23}});
}

TEST_CASE("concat, split, stack: CUDA matches CPU", "[cuda][views]") {
  check_cuda_matches_cpu("concat", [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{concat({in[0], transpose(in[1], 0, 1), in[0]}, 1)};
  }, {{17, 5}, {130, 17}});
  check_cuda_matches_cpu("split", [](const std::vector<Tensor>& in) {
    std::vector<Tensor> parts = split(in[0], {100, 0, 29}, 1);
    return std::vector<Tensor>{mul(parts[0], parts[0]), parts[2]};
  }, {{9, 129}});
  check_cuda_matches_cpu("stack", [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{stack({in[0], in[1]}, 1)};
  }, {{33, 17}, {33, 17}});
}

TEST_CASE("casts and device copies on CUDA", "[cuda][views]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // f32 -> bf16 rounds to nearest even on the GPU exactly as on the CPU, for any layout.
  Tensor x = random_tensor({37, 129}, seed, DType::f32, -100.0, 100.0);
  Tensor gpu = to(x, Device::cuda(0));
  CHECK(cast(gpu, DType::bf16).to_vector<float>() == cast(x, DType::bf16).to_vector<float>());
  CHECK(cast(transpose(gpu, 0, 1), DType::bf16).to_vector<float>() ==
        cast(transpose(x, 0, 1), DType::bf16).to_vector<float>());
  CHECK(cast(cast(gpu, DType::bf16), DType::f32).to_vector<float>() ==
        cast(cast(x, DType::bf16), DType::f32).to_vector<float>());
  CHECK(cast(gpu, DType::f64).to_vector<double>() == cast(x, DType::f64).to_vector<double>());
  // Views on the GPU share storage.
  CHECK(transpose(gpu, 0, 1).storage() == gpu.storage());

  check_cuda_matches_cpu("cast to bf16 and back", [](const std::vector<Tensor>& in) {
    const Tensor y = cast(cast(in[0], DType::bf16), DType::f32);
    return std::vector<Tensor>{mul(y, y)};
  }, {{45, 67}});

  // to(): host -> GPU -> host round trip, and the gradient comes back to the host leaf.
  Tensor leaf = random_tensor({5, 7}, seed + 1, DType::f32).set_requires_grad(true);
  Tensor there = to(leaf, Device::cuda(0));
  CHECK(there.is_cuda());
  Tensor back = to(mul(there, 2.0), Device::cpu());
  CHECK(back.to_vector<float>() == mul(leaf.detach(), 2.0).to_vector<float>());
  backward(sum(back));
  CHECK(leaf.grad().is_cpu());
  CHECK(leaf.grad().to_vector<float>() == std::vector<float>(35, 2.0f));
}

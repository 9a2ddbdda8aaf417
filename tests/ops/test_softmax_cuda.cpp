// softmax and log_softmax on CUDA against the CPU reference, forward and backward, f32 and bf16:
// row lengths of 1 to 50257, dims other than the last, non-contiguous inputs, large logits.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
using Softmax = Tensor (*)(const Tensor&, int64_t);
const std::pair<const char*, Softmax> kOps[] = {{"softmax", softmax}, {"log_softmax", log_softmax}};
}  // namespace

TEST_CASE("softmax, log_softmax: CUDA matches CPU over the last dim, rows of 1 to 50257", "[cuda][softmax]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t cols : {1, 31, 1000, 50257}) {
      for (const auto& [name, f] : kOps) {
        const uint64_t seed = fresh_seed();
        INFO("seed " << seed);
        Tensor x = random_tensor({5, cols}, seed, DType::f32, -4, 4).set_requires_grad(true);
        check_cuda_matches_cpu([f = f](const Tensor& t) { return f(t, -1); }, x, dtype, name);
      }
    }
  }
}

TEST_CASE("softmax, log_softmax: CUDA matches CPU over other dims and strided inputs", "[cuda][softmax]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f] : kOps) {
      for (int64_t dim : {0, 1, -2}) {
        const uint64_t seed = fresh_seed();
        INFO("dim " << dim << " seed " << seed);
        Tensor x = random_tensor({7, 33, 19}, seed, DType::f32, -4, 4).set_requires_grad(true);
        check_cuda_matches_cpu([f = f, dim](const Tensor& t) { return f(t, dim); }, x, dtype, name);
      }
      const uint64_t seed = fresh_seed();
      INFO("strided, seed " << seed);
      Tensor x = random_tensor({9, 40, 6}, seed, DType::f32, -4, 4).set_requires_grad(true);
      check_cuda_matches_cpu([f = f](const Tensor& t) { return f(slice(transpose(t, 0, 1), 0, 1, 40, 2), -1); }, x,
                             dtype, name);
    }
  }
}

TEST_CASE("softmax, log_softmax: CUDA stays finite on large logits", "[cuda][softmax]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f] : kOps) {
      const uint64_t seed = fresh_seed();
      INFO("seed " << seed);
      // Around 1000, far beyond exp's range without the max shift. (bf16 spaces values 4 or 8
      // apart at this scale; the comparison feeds both sides the same rounded inputs.)
      Tensor x = add(random_tensor({4, 777}, seed, DType::f32, -30, 30), 1000.0).set_requires_grad(true);
      check_cuda_matches_cpu([f = f](const Tensor& t) { return f(t, -1); }, x, dtype, name);
    }
  }
}

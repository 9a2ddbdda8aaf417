// Reductions on CUDA against the CPU reference, forward and backward, f32 and bf16: row lengths
// that are not multiples of the block size, trailing and leading dims, dim sets, non-contiguous
// inputs, and tied maxima.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {
using Reduce = Tensor (*)(const Tensor&, const std::vector<int64_t>&, bool);
const std::pair<const char*, Reduce> kReductions[] = {{"sum", sum}, {"mean", mean}, {"max", max}};
}  // namespace

TEST_CASE("reductions: CUDA matches CPU over the last dim, rows of 1 to 50257", "[cuda][reduce]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t cols : {1, 31, 1000, 50257}) {
      for (const auto& [name, f] : kReductions) {
        const uint64_t seed = fresh_seed();
        INFO("seed " << seed);
        Tensor x = random_tensor({3, cols}, seed, DType::f32).set_requires_grad(true);
        check_cuda_matches_cpu([f = f](const Tensor& t) { return f(t, {-1}, false); }, x, dtype, name);
      }
    }
  }
}

TEST_CASE("reductions: CUDA matches CPU over leading, middle and several dims", "[cuda][reduce]") {
  // In memory: {0}, {1}, {0, 1} are column reductions; {2}, {1, 2}, {} rows; {0, 2} needs a gather.
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {1}, {-2, 0}, {2}, {1, -1}, {0, 2}, {0, 1, 2}};
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f] : kReductions) {
      for (const auto& dims : dim_sets) {
        for (bool keepdim : {false, true}) {
          const uint64_t seed = fresh_seed();
          INFO("dims " << shape_str(dims) << " keepdim " << keepdim << " seed " << seed);
          Tensor x = random_tensor({5, 33, 17}, seed, DType::f32).set_requires_grad(true);
          check_cuda_matches_cpu([f = f, dims, keepdim](const Tensor& t) { return f(t, dims, keepdim); }, x, dtype,
                                 name);
        }
      }
      // A large leading-dim reduction (the bias gradient of a linear layer): [4099, 257] -> [257].
      const uint64_t seed = fresh_seed();
      INFO("seed " << seed);
      Tensor x = random_tensor({4099, 257}, seed, DType::f32).set_requires_grad(true);
      check_cuda_matches_cpu([f = f](const Tensor& t) { return f(t, {0}, false); }, x, dtype, name);
      // Both are cut into slices of rows reduced by separate blocks (cuda/reduce.cu), the first into 8 of
      // 513 and 510 rows; a middle-dim one with several outer slabs: [3, 2050, 40] over dim 1, 4 slices.
      Tensor y = random_tensor({3, 2050, 40}, seed + 1, DType::f32).set_requires_grad(true);
      check_cuda_matches_cpu([f = f](const Tensor& t) { return f(t, {1}, false); }, y, dtype, name);
    }
  }
}

TEST_CASE("reductions: CUDA matches CPU on non-contiguous inputs", "[cuda][reduce]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const auto& [name, f] : kReductions) {
      const uint64_t seed = fresh_seed();
      INFO("seed " << seed);
      Tensor x = random_tensor({6, 35, 9}, seed, DType::f32).set_requires_grad(true);
      check_cuda_matches_cpu(
          [f = f](const Tensor& t) { return f(slice(transpose(t, 0, 2), 1, 1, 35, 3), {1, 2}, false); }, x, dtype,
          name);
    }
  }
}

TEST_CASE("max: CUDA shares the gradient among ties like the CPU", "[cuda][reduce]") {
  // Small integers (exact in bf16), so every row has many tied maxima.
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  std::vector<float> values = random_tensor({7, 300}, seed, DType::f32, 0.0, 4.0).to_vector<float>();
  for (float& v : values) v = static_cast<float>(static_cast<int>(v));
  Tensor x = Tensor::from_vector(values, {7, 300}).set_requires_grad(true);
  for (DType dtype : {DType::f32, DType::bf16}) {
    check_cuda_matches_cpu([](const Tensor& t) { return max(t, {1}, true); }, x, dtype, "max over dim 1");
    check_cuda_matches_cpu([](const Tensor& t) { return max(t, {}, false); }, x, dtype, "max over all dims");
  }
}

TEST_CASE("sum_to_shape: CUDA matches CPU", "[cuda][reduce]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (const Shape& target : std::vector<Shape>{{129}, {3, 1, 129}, {1, 41, 1}, {}}) {
      const uint64_t seed = fresh_seed();
      INFO("to " << shape_str(target) << " seed " << seed);
      Tensor x = random_tensor({3, 41, 129}, seed, DType::f32).set_requires_grad(true);
      check_cuda_matches_cpu([target](const Tensor& t) { return sum_to_shape(t, target); }, x, dtype, "sum_to_shape");
    }
  }
}

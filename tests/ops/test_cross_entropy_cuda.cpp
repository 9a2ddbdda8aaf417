// cross_entropy on CUDA against the CPU reference, forward and backward, f32 and bf16 logits,
// i32 and i64 targets, vocabularies of 1 to 50257 (and one row of 256K), ignored rows, bad ids, CPU targets.
#include <tuple>

#include "autograd/engine.h"
#include "core/cuda_context.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

void check_matches_cpu(const Tensor& logits, const Tensor& targets, int64_t ignore_index, DType dtype,
                       uint64_t seed) {
  std::string report;
  const double error = compare_cuda_to_cpu(
      [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{cross_entropy(in[0], in[1], ignore_index)}; },
      {logits, targets}, dtype, &report);
  INFO(dtype_name(dtype) << " logits " << logits.describe() << " targets " << targets.describe() << " seed " << seed
                         << "\n" << report);
  CHECK(error <= tolerance_for(dtype));
}

}  // namespace

TEST_CASE("cross_entropy: CUDA matches CPU for vocabularies of 1 to 50257", "[cuda][cross_entropy]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (DType target_dtype : {DType::i64, DType::i32}) {
      for (int64_t classes : {1, 31, 1000, 50257}) {
        const uint64_t seed = fresh_seed();
        Tensor logits = random_tensor({13, classes}, seed, DType::f32, -4, 4).set_requires_grad(true);
        std::vector<int64_t> ids = random_ids({13}, classes, seed + 1).to_vector<int64_t>();
        ids[2] = ids[7] = -100;  // two ignored rows
        check_matches_cpu(logits, Tensor::from_vector(ids, {13}, target_dtype), -100, dtype, seed);
      }
    }
  }
}

TEST_CASE("cross_entropy: CUDA handles a 256K vocabulary and a custom ignore_index", "[cuda][cross_entropy]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor logits = random_tensor({3, 262144}, seed, DType::f32, -4, 4).set_requires_grad(true);
    const Tensor targets = Tensor::from_vector<int64_t>({262143, 5, 0}, {3});
    check_matches_cpu(logits, targets, 5, dtype, seed);  // row 1 is ignored
  }
}

TEST_CASE("cross_entropy: CUDA, all rows ignored gives 0 and a zero gradient", "[cuda][cross_entropy]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    INFO(dtype_name(dtype) << " seed " << seed);
    Tensor logits = random_tensor({4, 1000}, seed, dtype, -4, 4, Device::cuda(0)).set_requires_grad(true);
    const Tensor targets = to(Tensor::from_vector<int64_t>({-100, -100, -100, -100}, {4}), Device::cuda(0));
    const Tensor loss = cross_entropy(logits, targets);
    CHECK(loss.dtype() == DType::f32);
    CHECK(loss.item() == 0.0);
    backward(loss);
    CHECK(logits.grad().to_vector<double>() == std::vector<double>(4000, 0.0));
  }
}

TEST_CASE("cross_entropy: CUDA rejects target ids outside [0, C), naming the id and the row", "[cuda][cross_entropy]") {
  const Tensor logits = Tensor::zeros({4, 50}, DType::f32, Device::cuda(0));
  for (DType target_dtype : {DType::i64, DType::i32}) {
    INFO(dtype_name(target_dtype));
    const Tensor targets = to(Tensor::from_vector<int64_t>({0, 49, 1, 50}, {4}, target_dtype), Device::cuda(0));
    REQUIRE_THROWS_AS(cross_entropy(logits, targets), Error);
    try {
      cross_entropy(logits, targets);
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(message.find("target id 50") != std::string::npos);
      CHECK(message.find("row 3") != std::string::npos);
    }
  }
  // Targets on the CPU are checked there; CPU logits do not take CUDA targets.
  CHECK(contains(error_message([&] { cross_entropy(logits, Tensor::from_vector<int64_t>({0, 49, 1, 50}, {4})); }),
                 "target id 50"));
  CHECK_THROWS_AS(cross_entropy(Tensor::zeros({4, 50}), to(Tensor::zeros({4}, DType::i64), Device::cuda(0))), Error);
}

TEST_CASE("cross_entropy: CPU targets with CUDA logits give the same bits, without a host synchronisation",
          "[cuda][cross_entropy]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor targets = random_ids({300}, 70, seed);
  const Tensor values = random_tensor({300, 70}, seed + 1, DType::f32, -4.0, 4.0);
  auto run = [&](const Tensor& these_targets) {
    Tensor logits = Tensor::empty({300, 70}, DType::f32, Device::cuda(0));
    copy_(logits, values);
    logits.set_requires_grad(true);
    const int64_t before = host_synchronizations();
    const Tensor loss = cross_entropy(logits, these_targets);
    backward(loss);
    const int64_t waits = host_synchronizations() - before;
    return std::make_tuple(loss.item(), logits.grad().to_vector<float>(), waits);
  };
  const auto [loss_host, grad_host, waits_host] = run(targets);
  const auto [loss_device, grad_device, waits_device] = run(to(targets, Device::cuda(0)));
  CHECK(waits_host == 0);
  CHECK(waits_device == 1);  // the targets' copy to the host
  CHECK(loss_host == loss_device);
  CHECK(grad_host == grad_device);
}

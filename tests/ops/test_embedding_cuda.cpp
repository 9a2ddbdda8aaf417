// embedding on CUDA against the CPU reference: gather and scatter-add with many repeated ids,
// f32 and bf16, i32 and i64 ids; the deterministic backward; out-of-range ids; ids on the CPU.
#include <tuple>

#include "autograd/engine.h"
#include "core/cuda_context.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("embedding: CUDA matches CPU, forward and backward", "[cuda][embedding]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (DType id_dtype : {DType::i32, DType::i64}) {
      const uint64_t seed = fresh_seed();
      // 37 distinct rows for 7 * 33 ids: every row repeats; dim 129 is not a multiple of the block.
      Tensor weight = random_tensor({37, 129}, seed, DType::f32).set_requires_grad(true);
      Tensor ids = random_ids({7, 33}, 37, seed + 1, id_dtype);
      std::string report;
      const double error = compare_cuda_to_cpu(
          [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{embedding(in[0], in[1])}; }, {weight, ids},
          dtype, &report);
      INFO(dtype_name(dtype) << " ids " << dtype_name(id_dtype) << " seed " << seed << "\n" << report);
      CHECK(error <= tolerance_for(dtype));
    }
  }
}

TEST_CASE("embedding: CUDA with a transposed weight and non-contiguous ids", "[cuda][embedding]") {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const uint64_t seed = fresh_seed();
    Tensor weight = random_tensor({65, 300}, seed, DType::f32).set_requires_grad(true);  // read as [300, 65]
    Tensor ids = random_ids({9, 20}, 300, seed + 1);
    std::string report;
    const double error = compare_cuda_to_cpu(
        [&](const std::vector<Tensor>& in) {
          return std::vector<Tensor>{embedding(transpose(in[0], 0, 1), transpose(in[1], 0, 1))};
        },
        {weight, ids}, dtype, &report);
    INFO(dtype_name(dtype) << " seed " << seed << "\n" << report);
    CHECK(error <= tolerance_for(dtype));
  }
}

TEST_CASE("embedding: CUDA backward is deterministic and sums in the CPU's order", "[cuda][embedding]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // 5000 ids over 3 rows: long groups; each row's sum is added position by position on both devices.
  Tensor ids = random_ids({5000}, 3, seed);
  Tensor dy = random_tensor({5000, 300}, seed + 1, DType::f32);
  auto gradient = [&](const Device& device) {
    Tensor w = Tensor::zeros({3, 300}, DType::f32, device).set_requires_grad(true);
    backward(embedding(w, to(ids, device)), to(dy, device));
    return w.grad().to_vector<float>();
  };
  const std::vector<float> first = gradient(Device::cuda(0));
  CHECK(first == gradient(Device::cuda(0)));
  CHECK(first == gradient(Device::cpu()));  // same f32 additions in the same order: bit for bit
}

TEST_CASE("embedding: out-of-range ids on CUDA are reported", "[cuda][embedding]") {
  Tensor weight = Tensor::zeros({10, 4}, DType::f32, Device::cuda(0));
  Tensor ids = Tensor::from_vector<int64_t>({3, 10, 2}, {3}, DType::i64, Device::cuda(0));
  const std::string message = error_message([&] { embedding(weight, ids); });
  CHECK(message.find("id 10 at position [1]") != std::string::npos);
  // Ids on the CPU are checked there; a CPU weight does not take CUDA ids.
  const Tensor host_ids = Tensor::from_vector<int64_t>({3, 10, 2}, {3});
  CHECK(error_message([&] { embedding(weight, host_ids); }).find("id 10 at position [1]") != std::string::npos);
  CHECK(error_message([&] { embedding(Tensor::zeros({10, 4}), ids); }).find("different devices") != std::string::npos);
}

TEST_CASE("embedding: CPU ids with a CUDA weight give the same bits, without a host synchronisation",
          "[cuda][embedding]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const Tensor ids = random_ids({4, 300}, 50, seed);
  const Tensor values = random_tensor({50, 64}, seed + 1, DType::f32);
  const Tensor dy = to(random_tensor({4, 300, 64}, seed + 2, DType::f32), Device::cuda(0));
  auto run = [&](const Tensor& these_ids) {
    Tensor w = Tensor::empty({50, 64}, DType::f32, Device::cuda(0));
    copy_(w, values);
    w.set_requires_grad(true);
    const int64_t before = host_synchronizations();
    const Tensor y = embedding(w, these_ids);
    backward(y, dy);
    const int64_t waits = host_synchronizations() - before;
    return std::make_tuple(y.to_vector<float>(), w.grad().to_vector<float>(), waits);
  };
  const auto [y_host, dw_host, waits_host] = run(ids);
  const auto [y_device, dw_device, waits_device] = run(to(ids, Device::cuda(0)));
  CHECK(waits_host == 0);
  CHECK(waits_device == 1);  // the ids' copy to the host
  CHECK(y_host == y_device);
  CHECK(dw_host == dw_device);
}

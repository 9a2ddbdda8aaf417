#pragma once
// The tests every Communicator backend passes (MPI on CPU tensors, MPI staged through pinned memory
// and NCCL on CUDA tensors): each operation on rank-dependent inputs whose result every rank can
// compute by itself (Megatron's test_mappings does the same). Values are small integers, exact in
// every dtype (bf16 included), except the random-input all-reduce, which is checked in f32/f64 against
// the sum computed here in f64 from every rank's inputs (each rank can draw all of them: the seed is
// shared).
#include <cmath>
#include <vector>

#include "dist/communicator.h"
#include "dist/parallel_state.h"
#include "ops/ops.h"
#include "support/testing.h"

namespace mgl::testing {

// Rank 0's fresh seed, the same on every rank of `world`.
inline uint64_t shared_seed(const dist::ProcessGroup& world) {
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(fresh_seed())}, {1});
  world.on(Device::cpu()).broadcast(t, 0)->wait();
  return static_cast<uint64_t>(t.to_vector<int64_t>()[0]);
}

// value(rank, k) as a tensor of n elements on `device` in `dtype`.
template <class F>
Tensor rank_tensor(int64_t n, DType dtype, const Device& device, F value) {
  std::vector<double> v(n);
  for (int64_t k = 0; k < n; ++k) v[k] = value(k);
  return Tensor::from_vector(v, {n}, dtype, device);
}

inline void check_values(const Tensor& t, const std::vector<double>& expected, const std::string& what) {
  const std::vector<double> got = t.to_vector<double>();
  INFO(what);
  REQUIRE(got.size() == expected.size());
  for (size_t k = 0; k < got.size(); ++k) {
    INFO("element " << k);
    CHECK(got[k] == expected[k]);
  }
}

inline void run_communicator_suite(dist::Communicator& c, const Device& device, DType dtype, uint64_t seed) {
  const int r = c.rank(), w = c.size();
  INFO(c.name() << " group, rank " << r << " of " << w << ", " << dtype_name(dtype) << " on " << device.str()
                << ", seed " << seed);
  const int64_t n = 7;

  {  // all_reduce, sum and max, in place; several in flight at once, waited in order
    std::vector<Tensor> sums, maxes;
    std::vector<dist::WorkHandle> work;
    for (int i = 0; i < 3; ++i) {
      sums.push_back(rank_tensor(n, dtype, device, [&](int64_t k) { return double(r + 1 + k + i); }));
      maxes.push_back(rank_tensor(n, dtype, device, [&](int64_t k) { return double((r * 3 + k) % (w + 2)); }));
      work.push_back(c.all_reduce(sums.back(), dist::ReduceOp::sum));
      work.push_back(c.all_reduce(maxes.back(), dist::ReduceOp::max));
    }
    for (auto& job : work) job->wait();
    for (int i = 0; i < 3; ++i) {
      std::vector<double> sum(n, 0.0), max(n, -1.0);
      for (int64_t k = 0; k < n; ++k)
        for (int q = 0; q < w; ++q) {
          sum[k] += q + 1 + k + i;
          max[k] = std::max(max[k], double((q * 3 + k) % (w + 2)));
        }
      check_values(sums[i], sum, "all_reduce sum");
      check_values(maxes[i], max, "all_reduce max");
    }
  }
  {  // all_gather: rank order, flat
    const Tensor in = rank_tensor(n, dtype, device, [&](int64_t k) { return double(10 * r + k); });
    const Tensor out = Tensor::zeros({n * w}, dtype, device);
    c.all_gather(in, out)->wait();
    std::vector<double> expected;
    for (int q = 0; q < w; ++q)
      for (int64_t k = 0; k < n; ++k) expected.push_back(10 * q + k);
    check_values(out, expected, "all_gather");
  }
  {  // reduce_scatter: piece `rank` of the sum
    const Tensor in = rank_tensor(n * w, dtype, device, [&](int64_t j) { return double(r + j); });
    const Tensor out = Tensor::zeros({n}, dtype, device);
    c.reduce_scatter(in, out)->wait();
    std::vector<double> expected(n, 0.0);
    for (int64_t k = 0; k < n; ++k)
      for (int q = 0; q < w; ++q) expected[k] += q + r * n + k;
    check_values(out, expected, "reduce_scatter");
  }
  {  // broadcast from the last rank
    const Tensor t = rank_tensor(n, dtype, device, [&](int64_t k) { return double(r * 5 + k); });
    c.broadcast(t, w - 1)->wait();
    std::vector<double> expected(n);
    for (int64_t k = 0; k < n; ++k) expected[k] = (w - 1) * 5 + k;
    check_values(t, expected, "broadcast");
  }
  if (w > 1) {  // a ring of sends, two tags, the receives posted before the sends
    const int next = (r + 1) % w, prev = (r + w - 1) % w;
    const Tensor a = Tensor::zeros({n}, dtype, device), b = Tensor::zeros({3}, dtype, device);
    dist::WorkHandle recv_a = c.recv(a, prev, 1), recv_b = c.recv(b, prev, 2);
    dist::WorkHandle send_b = c.send(rank_tensor(3, dtype, device, [&](int64_t k) { return double(-r - k); }), next, 2);
    dist::WorkHandle send_a = c.send(rank_tensor(n, dtype, device, [&](int64_t k) { return double(r + 10 * k); }), next, 1);
    recv_a->wait();
    recv_b->wait();
    send_a->wait();
    send_b->wait();
    std::vector<double> ea(n), eb(3);
    for (int64_t k = 0; k < n; ++k) ea[k] = prev + 10 * k;
    for (int64_t k = 0; k < 3; ++k) eb[k] = -prev - k;
    check_values(a, ea, "recv tag 1");
    check_values(b, eb, "recv tag 2");
  }
  if (dtype == DType::f32 || dtype == DType::f64) {  // random inputs: the sum of every rank's draw
    const int64_t m = 1000;
    const Tensor mine = random_tensor({m}, seed + static_cast<uint64_t>(r), dtype, -1.0, 1.0, device);
    Tensor expected = Tensor::zeros({m}, DType::f64);
    for (int q = 0; q < w; ++q) add_(expected, cast(random_tensor({m}, seed + static_cast<uint64_t>(q), dtype), DType::f64));
    c.all_reduce(mine, dist::ReduceOp::sum)->wait();
    const double error = relative_error(cast(to(mine, Device::cpu()), DType::f64), expected);
    CHECK(error <= (dtype == DType::f32 ? 1e-6 : 1e-14));
  }
  {  // bad input names the group and the problem
    const Tensor in = Tensor::zeros({n}, dtype, device), wrong = Tensor::zeros({n * w + 1}, dtype, device);
    CHECK(contains(error_message([&] { c.all_gather(in, wrong); }), c.name() + " group all_gather: output"));
    CHECK(contains(error_message([&] { c.send(in, r, 0); }), "is not another rank of this group"));
  }
}

}  // namespace mgl::testing

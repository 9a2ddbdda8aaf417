// The kernel profiler on a GPU (apps/lib/kernel_profiler.h, cuda/kernel_activity.h): CUPTI records the
// kernels and copies launched while it records, under their short names and with their counts, nothing
// from outside its windows, and no record is lost.
#include <algorithm>

#include "apps/lib/kernel_profiler.h"
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

// The row whose name holds `part`; the elementwise kernels are found by their op (base/elementwise_math.h:
// BinaryOp add = 0, mul = 2), whatever the kernel is called.
const KernelStats* find_row(const KernelProfile& profile, const std::string& part) {
  const auto it = std::find_if(profile.rows.begin(), profile.rows.end(),
                               [&](const KernelStats& r) { return contains(r.name, part); });
  return it == profile.rows.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("profiler cuda: the kernels of the windows, by name and count", "[apps][profiler][cuda]") {
  const Device gpu = Device::cuda(0);
  const Tensor a = random_tensor({1000, 1000}, fresh_seed(), DType::f32, -1, 1, gpu);
  const Tensor b = random_tensor({1000, 1000}, fresh_seed(), DType::f32, -1, 1, gpu);
  add(a, b);  // outside any window: not recorded
  KernelProfiler profiler(gpu);
  profiler.resume();
  for (int i = 0; i < 3; ++i) add(a, b);
  const std::vector<float> host = mul(a, b).to_vector<float>();  // one more kernel, and a copy to the host
  profiler.pause();
  mul(a, b);  // between the windows: not recorded
  profiler.resume();
  add(a, b);
  profiler.pause();

  const KernelProfile p = profiler.summary(2);
  INFO(format_profile_table(p, 20));
  CHECK(p.dropped == 0);
  CHECK(p.untimed == 0);
  const KernelStats* adds = find_row(p, "(BinaryOp)0");
  const KernelStats* muls = find_row(p, "(BinaryOp)2");
  const KernelStats* copies = find_row(p, "[memcpy DtoH]");
  REQUIRE(adds);
  REQUIRE(muls);
  REQUIRE(copies);
  CHECK(adds->count == 4);
  CHECK(muls->count == 1);
  CHECK(copies->count >= 1);
  CHECK(adds->total_ms > 0);
  CHECK(p.busy_ms > 0);
  CHECK(p.span_ms >= adds->total_ms);
  CHECK(host.size() == 1000u * 1000u);
}

TEST_CASE("profiler cuda: one recording at a time", "[apps][profiler][cuda]") {
  KernelProfiler first(Device::cuda(0));
  first.resume();
  KernelProfiler second(Device::cuda(0));
  CHECK(contains(error_message([&] { second.resume(); }), "a recording is already running"));
  first.pause();
  second.resume();  // free again
  second.pause();
}

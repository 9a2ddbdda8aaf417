// The kernel profiler's arithmetic and text (apps/lib/kernel_profiler.h) on made-up CUPTI records: names
// demangled and shortened, rows summed by short name and sorted, busy time and span per step, shares, the
// table and the JSON; and a CPU run is refused. The recording itself is tested on a GPU
// (test_kernel_profiler_cuda.cpp).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "apps/lib/kernel_profiler.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
using cuda::Activity;
using cuda::ActivityKind;

namespace {

// Two instantiations of one kernel template (cuda/elementwise.cu's binary_kernel<double, add, contiguous>)
// as compiled in two translation units: nvcc names each file's anonymous namespace differently.
const char* kBinaryAddInFileA =
    "_ZN3mgl4cuda47_GLOBAL__N__f794beec_14_elementwise_cu_e1c1ad3013binary_kernelIdLNS_8BinaryOpE0ELb1EEEvPKT_NS0_"
    "6LayoutES6_S7_PS4_l";
const char* kBinaryAddInFileB =
    "_ZN3mgl4cuda47_GLOBAL__N__0123abcd_14_elementwise_cu_89abcdef13binary_kernelIdLNS_8BinaryOpE0ELb1EEEvPKT_NS0_"
    "6LayoutES6_S7_PS4_l";
// cuBLAS names its kernels in plain C.
const char* kGemm = "nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT";

bool near(double value, double expected) { return std::abs(value - expected) <= 1e-9 * std::max(1.0, std::abs(expected)); }

// A record starting `start_us` after an arbitrary origin of the GPU's clock (a timestamp of 0 means
// "not timed").
Activity record(ActivityKind kind, const char* name, uint64_t start_us, uint64_t duration_us) {
  const uint64_t origin_ns = 1'000'000'000;
  return {kind, name, origin_ns + start_us * 1000, origin_ns + (start_us + duration_us) * 1000};
}

// Two windows of one step each: window 1 spans 0..1000 µs, window 2 spans 5000..5600 µs.
ActivityLog two_windows() {
  ActivityLog log;
  log.add(record(ActivityKind::kernel, kGemm, 0, 400));
  log.add(record(ActivityKind::kernel, kBinaryAddInFileA, 400, 100));
  log.add(record(ActivityKind::memcpy, "HtoD", 500, 50));
  log.add(record(ActivityKind::kernel, kBinaryAddInFileB, 900, 100));
  log.close_window();
  log.add(record(ActivityKind::kernel, kGemm, 5000, 400));
  log.add(record(ActivityKind::kernel, kBinaryAddInFileA, 5400, 100));
  log.add(record(ActivityKind::memset, "memset", 5500, 100));
  log.add({ActivityKind::kernel, kGemm, 0, 0});  // CUPTI could not time it
  log.close_window();
  log.add_dropped(2);
  return log;
}

}  // namespace

TEST_CASE("kernel names are demangled and shortened", "[apps][profiler]") {
  CHECK(short_kernel_name(kBinaryAddInFileA) == "binary_kernel<double, (BinaryOp)0, true>");
  CHECK(short_kernel_name(
            "_ZN3mgl4cuda51_GLOBAL__N__09c1e909_18_chunk_attention_cu_56789ce319weighted_sum_kernelINS1_9FmaEngineI13__"
            "nv_bfloat16Li256EEELNS1_7WeightsE1EEEvNS1_6InputsINT_7StorageEEENS1_11WeightedSumIS9_EENS_14AttentionShapeEil") ==
        "weighted_sum_kernel<FmaEngine<__nv_bfloat16, 256>, (Weights)1>");
  CHECK(short_kernel_name(kGemm) == kGemm);                  // not mangled: as it is
  CHECK(short_kernel_name("_Znot_a_name") == "_Znot_a_name");  // not demangleable: as it is
  // A qualifier that is a template-id stays; plain namespaces go.
  CHECK(short_kernel_name("void cub::Kernel<cub::Policy<float>::Tuned, int>(float*, int)") ==
        "Kernel<Policy<float>::Tuned, int>");
  // Too long: the deepest template arguments go first, until the name fits.
  const std::string deep = "void ns::kernel<ns::Outer<ns::Inner<" + std::string(60, 'x') + ">, " + std::string(40, 'y') +
                           ">, int>(int)";
  CHECK(short_kernel_name(deep) == "kernel<Outer<Inner<…>, " + std::string(40, 'y') + ">, int>");
}

TEST_CASE("activities are summed by short name over the windows, largest first", "[apps][profiler]") {
  const KernelProfile p = two_windows().summary(2);
  CHECK(p.steps == 2);
  CHECK(p.activities == 7);
  CHECK(p.untimed == 1);
  CHECK(p.dropped == 2);
  CHECK(near(p.busy_ms, 1.25));
  CHECK(near(p.span_ms, 1.6));  // 1000 µs + 600 µs: the gap between the windows does not count
  REQUIRE(p.rows.size() == 4);
  CHECK(p.rows[0].name == kGemm);
  CHECK(p.rows[0].count == 2);
  CHECK(near(p.rows[0].total_ms, 0.8));
  CHECK(near(p.rows[0].mean_us(), 400));
  CHECK(near(p.rows[0].share, 0.8 / 1.25));
  // Both files' instantiations in one row.
  CHECK(p.rows[1].name == "binary_kernel<double, (BinaryOp)0, true>");
  CHECK(p.rows[1].count == 3);
  CHECK(near(p.rows[1].total_ms, 0.3));
  CHECK(p.rows[2].name == "[memset]");
  CHECK(p.rows[2].kind == ActivityKind::memset);
  CHECK(p.rows[3].name == "[memcpy HtoD]");
  CHECK(near(p.rows[3].total_ms, 0.05));
  double shares = 0;
  for (const KernelStats& r : p.rows) shares += r.share;
  CHECK(near(shares, 1.0));
  CHECK(contains(error_message([] { ActivityLog().summary(0); }), "at least one step"));
}

TEST_CASE("the profile table shows the top rows, the rest in one line, and warns of lost records", "[apps][profiler]") {
  const std::string table = format_profile_table(two_windows().summary(2), 2);
  INFO(table);
  CHECK(contains(table, "2 step(s); per step: GPU busy 0.625 ms over a span of 0.800 ms (78.1%), 4 activities"));
  CHECK(contains(table, "2 record(s) dropped"));
  CHECK(contains(table, "1 without timestamps"));
  CHECK(contains(table, "  share  ms/step   total ms    count    mean µs  name\n"));
  CHECK(contains(table, "  64.0%    0.400      0.800        2      400.0  nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT\n"));
  CHECK(contains(table, "  24.0%    0.150      0.300        3      100.0  binary_kernel<double, (BinaryOp)0, true>\n"));
  CHECK(contains(table, "  12.0%    0.075      0.150        2             (2 more names)\n"));
  CHECK(!contains(table, "[memset]"));
  CHECK(!contains(format_profile_table(ActivityLog().summary(1), 5), "dropped"));
}

TEST_CASE("the profile as JSON holds every row and the per-step figures", "[apps][profiler]") {
  const nlohmann::json j = nlohmann::json::parse(profile_json(two_windows().summary(2)));
  CHECK(j["steps"] == 2);
  CHECK(near(j["busy_ms_per_step"].get<double>(), 0.625));
  CHECK(near(j["span_ms_per_step"].get<double>(), 0.8));
  CHECK(j["activities"] == 7);
  CHECK(j["dropped_records"] == 2);
  CHECK(j["untimed_records"] == 1);
  REQUIRE(j["kernels"].size() == 4);
  const nlohmann::json& add = j["kernels"][1];
  CHECK(add["name"] == "binary_kernel<double, (BinaryOp)0, true>");
  CHECK(add["kind"] == "kernel");
  CHECK(add["count"] == 3);
  CHECK(near(add["total_ms"].get<double>(), 0.3));
  CHECK(near(add["ms_per_step"].get<double>(), 0.15));
  CHECK(near(add["mean_us"].get<double>(), 100));
  CHECK(near(add["share"].get<double>(), 0.24));
  CHECK(j["kernels"][3]["kind"] == "memcpy");
}

TEST_CASE("the profiler refuses a CPU device", "[apps][profiler]") {
  const std::string message = error_message([] { KernelProfiler profiler(Device::cpu()); });
  CHECK(contains(message, "--profile records GPU kernels (CUPTI) and needs a CUDA device; this run is on cpu"));
}

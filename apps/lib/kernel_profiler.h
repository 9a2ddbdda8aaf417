#pragma once
// The built-in kernel profiler of `train --profile` and `bench_train --profile` (docs/perf.md, "Kernel
// profiler"): which kernels a training step spends its GPU time in, without Nsight.
//
// KernelProfiler records, between resume() and pause(), every kernel, memory copy and memset the GPU runs
// (CUPTI's activity API, cuda/kernel_activity.h) into an ActivityLog, which sums them by name. A caller
// brackets the steps it wants profiled (a window) and asks for the summary per step: rows by kernel name
// (demangled and shortened, so instantiations of one template over the same types share a row), largest
// total first, each with its count, total and mean time and its share of the GPU's busy time. The log,
// the names and the table/JSON forms are pure functions of the records, tested on made-up ones
// (tests/apps/test_kernel_profiler.cpp).
//
// Two times describe a window: busy, the sum of every activity's duration (work on concurrent streams
// counts twice), and span, from the first activity's start to the last one's end. busy / span well below 1
// means the GPU waited: for the host (launch overhead, synchronisations) or between kernels.
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "cuda/kernel_activity.h"

namespace mgl::apps {

// Every activity of one name.
struct KernelStats {
  std::string name;  // short_kernel_name of a kernel; "[memcpy HtoD]" and the like; "[memset]"
  cuda::ActivityKind kind = cuda::ActivityKind::kernel;
  int64_t count = 0;
  double total_ms = 0;
  double share = 0;  // of the busy time
  double mean_us() const { return count > 0 ? 1e3 * total_ms / static_cast<double>(count) : 0.0; }
};

struct KernelProfile {
  int64_t steps = 0;            // the steps the windows held (what the per-step figures divide by)
  double busy_ms = 0;           // summed over the windows
  double span_ms = 0;           // summed over the windows
  int64_t activities = 0;       // timed records
  int64_t untimed = 0;          // records CUPTI could not time (left out of every figure)
  uint64_t dropped = 0;         // records CUPTI could not store (it had no buffer)
  std::vector<KernelStats> rows;  // largest total first
};

// Sums activities by (kind, name) as they arrive, window by window.
class ActivityLog {
 public:
  void add(const cuda::Activity& activity);
  void add_dropped(uint64_t records) { dropped_ += records; }
  // Ends the current window: its span (first start to last end) is added to the total.
  void close_window();
  // The rows by short name, over `steps` steps (>= 1).
  KernelProfile summary(int64_t steps) const;

 private:
  struct Totals {
    int64_t count = 0;
    uint64_t total_ns = 0;
  };
  std::map<std::pair<cuda::ActivityKind, std::string>, Totals> totals_;
  int64_t untimed_ = 0;
  uint64_t dropped_ = 0;
  uint64_t span_ns_ = 0;
  uint64_t window_start_ = UINT64_MAX, window_end_ = 0;
};

// A kernel's name as a reader wants it: demangled (abi::__cxa_demangle; a name that is not mangled, such
// as cuBLAS's, stays as it is), without the return type, the parameter list and namespace qualifiers, and
// with template arguments nested deeper than one level shown as <…>:
//   _ZN3mgl4cuda12_GLOBAL__N_113binary_kernelIfLNS_8BinaryOpE2ELb1EEEvPKT_NS0_6LayoutES6_S7_PS4_l
//   -> binary_kernel<float, (BinaryOp)2, true>
std::string short_kernel_name(const std::string& name);

// The table `--profile` prints: a header line with the per-step figures, then the `top` largest rows and
// a line for the rest.
std::string format_profile_table(const KernelProfile& profile, int64_t top);
// Every row and figure as JSON (`--profile-json`); times per step where the key says so.
std::string profile_json(const KernelProfile& profile);

// What `--profile` asks for (apps/lib/command_line.h adds the flags).
struct ProfileOptions {
  bool enabled = false;
  int64_t steps = 3;     // steps in the window
  int64_t after = 3;     // train: steps of the run before the window (bench_train profiles after its timed steps)
  std::string json;      // file for profile_json (empty: none)
  int64_t top = 25;      // rows printed
};

class KernelProfiler {
 public:
  // Throws mgl::Error unless `device` is a usable CUDA device (the profiler records GPU work only):
  // require_device, which an app calls first to refuse a CPU run before any work.
  explicit KernelProfiler(const Device& device);
  static void require_device(const Device& device);
  ~KernelProfiler();
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  void resume();  // records from now on
  void pause();   // waits for the device, stops recording: the window's every record is in the log
  KernelProfile summary(int64_t steps) const { return log_.summary(steps); }

 private:
  Device device_;
  bool recording_ = false;
  ActivityLog log_;
};

// Prints the table to `out` (when not null) and writes the JSON to options.json (when set).
void report_profile(const KernelProfile& profile, const ProfileOptions& options, std::FILE* out);

}  // namespace mgl::apps

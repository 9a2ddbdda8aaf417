#include "dist/fault_monitor.h"

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/error.h"

namespace mgl::dist {

FaultMonitor::FaultMonitor(int world_rank, double timeout_s, std::function<void(int)> abort_job)
    : world_rank_(world_rank), timeout_s_(timeout_s), abort_job_(std::move(abort_job)) {
  MGL_CHECK(timeout_s > 0, "parallel.timeout_s must be > 0, got ", timeout_s);
}

void FaultMonitor::wait_until(const std::function<bool()>& done, const std::string& what) const {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_.load());
  for (int polls = 0; !done(); ++polls) {
    // Spin briefly (most operations finish within microseconds), then sleep between polls.
    if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 100000 ? 1000 : 50));
    if ((polls & 63) == 0 && Clock::now() > deadline) fail(what);
  }
}

void FaultMonitor::fail(const std::string& what, bool main_thread) const {
  const int64_t step = step_.load();
  std::fflush(stdout);
  std::fprintf(stderr, "rank %d: %s%s did not complete within %g s (a rank of the group died or hangs); ending the job\n",
               world_rank_, step >= 0 ? ("step " + std::to_string(step) + ": ").c_str() : "", what.c_str(),
               timeout_s_.load());
  std::fflush(stderr);
  for (const auto& action : before_abort_) action();
  if (abort_job_ && main_thread) abort_job_(3);
  std::_Exit(3);
}

FaultMonitor::LongWait::LongWait(FaultMonitor& monitor, double seconds)
    : monitor_(monitor), previous_(monitor.timeout_s_.load()) {
  if (seconds > previous_) monitor_.timeout_s_.store(seconds);
}

FaultMonitor::LongWait::~LongWait() { monitor_.timeout_s_.store(previous_); }

void FaultMonitor::on_abort(std::function<void()> action) { before_abort_.push_back(std::move(action)); }

}  // namespace mgl::dist

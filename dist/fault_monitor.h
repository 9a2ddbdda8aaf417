#pragma once
// FaultMonitor: what turns a dead or hung rank into a bounded, named failure of the whole job.
//
// Every wait on a communication polls its completion against a deadline (`timeout_s`, the config's
// parallel.timeout_s). A wait that passes it means some rank of the group stopped taking part: it
// died (its peers may never hear of it), hangs, or runs other code. The monitor then prints one line
//   rank 3: step 17: data all_reduce did not complete within 60 s (a rank of the group died or hangs); ending the job
// and calls the abort action (MPI_Abort of the world for MPI runs: every rank exits non-zero). NCCL
// communicators are aborted first (ncclCommAbort), so no GPU work is left waiting.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mgl::dist {

class FaultMonitor {
 public:
  FaultMonitor(int world_rank, double timeout_s, std::function<void(int code)> abort_job);

  // The training step reported in messages (the trainer sets it as it goes; -1: before training).
  void set_step(int64_t step) { step_.store(step); }
  int64_t step() const { return step_.load(); }
  double timeout_s() const { return timeout_s_.load(); }
  int world_rank() const { return world_rank_; }

  // Polls `done` (with a short sleep once the operation has taken a while) until it returns true;
  // past the deadline, fail(what). `what` names the operation ("chunk recv from rank 0").
  void wait_until(const std::function<bool()>& done, const std::string& what) const;
  // Prints the one-line message and ends the job; does not return. Off the main thread (the NCCL
  // watchdog), MPI may not be called: this process exits, and the launcher ends the others.
  [[noreturn]] void fail(const std::string& what, bool main_thread = true) const;
  // Called before the job is aborted (NCCL registers ncclCommAbort of its communicators here).
  void on_abort(std::function<void()> action);

  // For the waits of a whole group on one rank's long work (rank 0 preparing the data or writing a
  // checkpoint): the timeout is at least `seconds` while the guard lives. Such waits are still
  // bounded, by the longer time.
  class LongWait {
   public:
    LongWait(FaultMonitor& monitor, double seconds);
    ~LongWait();
    LongWait(const LongWait&) = delete;
    LongWait& operator=(const LongWait&) = delete;

   private:
    FaultMonitor& monitor_;
    double previous_;
  };

 private:
  int world_rank_;
  std::atomic<double> timeout_s_;
  std::function<void(int)> abort_job_;
  std::vector<std::function<void()>> before_abort_;
  std::atomic<int64_t> step_{-1};
};

}  // namespace mgl::dist

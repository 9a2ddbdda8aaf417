#include "apps/lib/app_errors.h"

#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>

#include "dist/mpi_world.h"

namespace mgl::apps {

int report_fatal_error(const char* prefix, const std::string& message, bool is_rank0) {
  std::fflush(stdout);
  const bool mpi = dist::launched_by_mpi();
  if (mpi && !is_rank0) std::this_thread::sleep_for(std::chrono::seconds(2));
  std::fprintf(stderr, "%s%s%s\n", prefix, mpi && !is_rank0 ? "(this rank) " : "", message.c_str());
  std::fflush(stderr);
  if (mpi) dist::abort_mpi_job(kExitFailure);
  return kExitFailure;
}

std::optional<int> settle_setup(const char* prefix, bool is_rank0, const std::function<void()>& setup) {
  std::optional<std::string> failure;
  try {
    setup();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!dist::launched_by_mpi()) return failure ? std::optional<int>(report_fatal_error(prefix, *failure, is_rank0)) : std::nullopt;
  dist::initialize_mpi();
  const bool rank0_failed = dist::on_any_rank(is_rank0 && failure.has_value());
  const bool any_failed = dist::on_any_rank(failure.has_value());
  if (!any_failed) return std::nullopt;
  if (!failure || (rank0_failed && !is_rank0)) {
    // Another rank reports and ends the job (rank 0 for all when it failed, else each rank that failed);
    // aborting from here could end the job before that report is printed, so wait for the end.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    dist::abort_mpi_job(kExitFailure);  // only if the launcher has not ended the job by then
  }
  return report_fatal_error(prefix, *failure, is_rank0);  // ends the job
}

}  // namespace mgl::apps

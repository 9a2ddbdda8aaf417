#include "apps/lib/app_errors.h"

#include <chrono>
#include <cstdio>
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

}  // namespace mgl::apps

#pragma once
// How an app ends on an error, alone or under mpirun (docs/parallelism.md, "Faults"): one message on
// stderr and a non-zero status, and under mpirun no rank left waiting. Most errors strike every rank
// alike (a bad argument or config), so rank 0 speaks for all and ends the job at once (MPI_Abort). For
// the setup phase (the command line's files and the config) the ranks agree on who failed before going on
// (settle_setup), so that who reports does not depend on timing. An error later, while the ranks work apart, can
// be this rank's alone: another rank first waits a moment, so that rank 0 can end the job if it failed
// too, then reports its own error, marked "(this rank)", and ends the job.
#include <functional>
#include <optional>
#include <string>

namespace mgl::apps {

// The exit status of every app (docs/reliability.md, "Exit status"): 0 success; kExitFailure an error
// while running (bad data, a bad config value, a file that cannot be read or written, a refused lock);
// kExitUsage a bad command line (apps/lib/command_line.h); kExitInterrupted a run stopped by SIGINT or
// SIGTERM after saving its state. Under mpirun a rank that stops answering ends the job with 3
// (dist/fault_monitor.h).
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

// Prints `prefix` (the app's name and "error", e.g. "train: error: "), then "(this rank) "
// on a rank other than 0 under mpirun, then the message and a newline; under an MPI launcher it then
// ends the whole job. Returns the exit status for a plain run (kExitFailure).
int report_fatal_error(const char* prefix, const std::string& message, bool is_rank0);

// Runs `setup`, the phase that every rank runs alike before the process grid exists (the command line's files
// and the config, identical on every rank as a rule), and settles its failure, an exception. Under mpirun the
// ranks agree over the world on who failed before any goes on, so that who reports does not depend on timing,
// as report_fatal_error's wait would under load:
//   - no rank failed: returns nothing, and the caller goes on;
//   - rank 0 failed: it reports its error for all and ends the job; the other ranks, failed or not,
//     print nothing and wait for that end;
//   - only other ranks failed: each reports its own error, marked "(this rank)", and ends the job.
// Without a launcher a failure is reported as report_fatal_error does, and its exit status returned.
std::optional<int> settle_setup(const char* prefix, bool is_rank0, const std::function<void()>& setup);

}  // namespace mgl::apps

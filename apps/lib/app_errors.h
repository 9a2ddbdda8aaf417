#pragma once
// How an app ends on an error, alone or under mpirun (docs/parallelism.md, "Faults"): one message on
// stderr and a non-zero status, and under mpirun no rank left waiting. Most errors strike every rank
// alike (a bad argument or config), so rank 0 speaks for all and ends the job at once (MPI_Abort);
// another rank first waits a moment, so that rank 0 can do so if it failed too, then reports its own
// error, marked "(this rank)", and ends the job.
#include <string>

namespace mgl::apps {

// Prints `prefix` (the app's own form, e.g. "\ntrain: error: " or "generate: "), then "(this rank) "
// on a rank other than 0 under mpirun, then the message and a newline; under an MPI launcher it then
// ends the whole job. Returns the exit status for a plain run (1).
int report_fatal_error(const char* prefix, const std::string& message, bool is_rank0);

}  // namespace mgl::apps

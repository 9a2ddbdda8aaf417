#pragma once
// Sharing independent work over the ranks of a group and bringing the results back to rank 0, for the
// apps that run under mpirun (generate: prompts and files spread over ranks).
#include <cstdint>
#include <string>
#include <vector>

#include "dist/parallel_state.h"

namespace mgl::apps {

// The rank each item goes to, balanced by cost: longest first, each to the least loaded rank (ties to
// the lower rank), so the result depends only on the costs and the number of ranks.
std::vector<int> assign_by_cost(const std::vector<int64_t>& costs, int ranks);

// Every rank's strings, in rank order, on rank 0 (other ranks get an empty list). Collective over
// `group` (CPU communicator).
std::vector<std::string> gather_strings(const std::vector<std::string>& mine, const dist::ProcessGroup& group);

}  // namespace mgl::apps

#pragma once
// Sharing independent work over the ranks of a group and bringing the results back to rank 0, for the
// apps that run under mpirun (generate: prompts and files spread over ranks).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dist/parallel_state.h"

namespace mgl::apps {

// The rank each item goes to, balanced by cost: longest first, each to the least loaded rank (ties to
// the lower rank), so the result depends only on the costs and the number of ranks.
std::vector<int> assign_by_cost(const std::vector<int64_t>& costs, int ranks);

// Texts numbered by item (a prompt's or a file's index) from every rank, concatenated on rank 0 in index
// order (other ranks get an empty string). Collective over `group`.
std::string gather_in_order(const std::vector<std::pair<int64_t, std::string>>& mine, const dist::ProcessGroup& group);

}  // namespace mgl::apps

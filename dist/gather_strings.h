#pragma once
// Strings from every rank of a group to its rank 0 (result lines, the grid's description): variable
// length, so they travel as one packed byte string per rank, padded to the longest, in one all-gather.
#include <string>
#include <vector>

#include "dist/parallel_state.h"

namespace mgl::dist {

// Every rank's strings, in rank order, on rank 0 (other ranks get an empty list). Collective over
// `group` (its CPU communicator).
std::vector<std::string> gather_strings(const std::vector<std::string>& mine, const ProcessGroup& group);

}  // namespace mgl::dist

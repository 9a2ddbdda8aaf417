#include "apps/lib/rank_shares.h"

#include <algorithm>
#include <numeric>

#include "dist/gather_strings.h"

namespace mgl::apps {

std::vector<int> assign_by_cost(const std::vector<int64_t>& costs, int ranks) {
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<int64_t> load(static_cast<size_t>(ranks), 0);
  std::vector<int> rank_of(costs.size(), 0);
  for (size_t item : order) {
    const auto least = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    rank_of[item] = least;
    load[static_cast<size_t>(least)] += costs[item];
  }
  return rank_of;
}

std::string gather_in_order(const std::vector<std::pair<int64_t, std::string>>& mine, const dist::ProcessGroup& group) {
  std::vector<std::string> tagged;  // "index\ttext"
  for (const auto& [index, text] : mine) tagged.push_back(std::to_string(index) + "\t" + text);
  std::vector<std::string> all = dist::gather_strings(tagged, group);
  std::sort(all.begin(), all.end(), [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
  std::string out;
  for (const std::string& t : all) out += t.substr(t.find('\t') + 1);
  return out;
}

}  // namespace mgl::apps

// Scoring one text over the ranks (apps/lib/parallel_scoring.h), under mpirun with 2 and 4 ranks, on
// the CPU in f32 (tests/apps/split_scoring_checks.h). Each (block, call) is the one-process computation
// from the same state, so only the order of the ranks' sums differs: ~1e-15 relative, checked at 1e-6.
#include "split_scoring_checks.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("the split score equals the one-process score in both TimestepNorm modes") {
  check_split_scores("cpu", DType::f32, 1e-6);
}

TEST_CASE("a part is whole calls, an even share of a short stream, and at most kPartTokens") {
  const int64_t call = 32;  // two chunks of 16
  for (int ranks : {2, 3, 4, 7})
    for (int64_t stream : {int64_t{1}, int64_t{31}, int64_t{64}, int64_t{1000}, int64_t{10'000'000}}) {
      INFO(ranks << " ranks, " << stream << " tokens");
      const int64_t part = apps::scoring_part_tokens(stream, 16, ranks);
      CHECK(part >= call);
      CHECK(part % call == 0);
      CHECK(part <= apps::kPartTokens);
      if (stream <= ranks * apps::kPartTokens) {
        CHECK(ranks * part >= stream);          // one round covers the stream
        CHECK(part < call + stream / ranks + 1);  // no larger than a share rounded up to a call
      }
    }
}

// Scoring one text over the ranks (apps/lib/parallel_scoring.h), under mpirun with 2 and 4 ranks, on
// the CPU in f32 (tests/apps/split_scoring_checks.h). Each (block, call) is the one-process computation
// from the same state, so only the order of the ranks' sums differs: ~1e-15 relative, checked at 1e-6.
#include "split_scoring_checks.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("the split score equals the one-process score in both TimestepNorm modes") {
  check_split_scores("cpu", DType::f32, 1e-6);
}

TEST_CASE("the pieces start on call boundaries and cover the stream") {
  for (int ranks : {1, 2, 3, 4, 7})
    for (int64_t predicted : {int64_t{1}, int64_t{31}, int64_t{64}, int64_t{1000}}) {
      const std::vector<int64_t> b = apps::scoring_pieces(predicted, 16, ranks);
      REQUIRE(b.size() == static_cast<size_t>(ranks + 1));
      CHECK(b.front() == 0);
      CHECK(b.back() == predicted);
      for (int r = 0; r < ranks; ++r) {
        CHECK(b[r] <= b[r + 1]);
        CHECK(b[r] % 32 == 0);
      }
    }
}

// The process grid and the MPI backend on CPU tensors (run under mpirun with 2 and 4 ranks).
#include <set>

#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

std::shared_ptr<dist::ParallelState> grid(int64_t data, int64_t chunk, int64_t tensor) {
  dist::ParallelOptions o;
  o.sizes = {data, chunk, tensor};
  o.timeout_s = 120;
  return dist::ParallelState::create(o, "cpu");
}

// The world ranks of this rank's group (gathered over the group itself).
std::set<int64_t> members(const dist::ProcessGroup& group, int world_rank) {
  const Tensor mine = Tensor::from_vector(std::vector<int64_t>{world_rank}, {1});
  const Tensor all = Tensor::empty({group.size()}, DType::i64);
  group.on(Device::cpu()).all_gather(mine, all)->wait();
  const std::vector<int64_t> v = all.to_vector<int64_t>();
  return {v.begin(), v.end()};
}

}  // namespace

TEST_CASE("the grid is data x chunk x tensor with tensor fastest") {
  REQUIRE(dist::launched_by_mpi());
  const int w = dist::initialize_mpi().size;
  REQUIRE(w >= 2);
  // Every factorisation of the world into (data, chunk, tensor).
  for (int64_t d = 1; d <= w; ++d)
    for (int64_t c = 1; d * c <= w; ++c) {
      if (w % (d * c) != 0) continue;
      const int64_t t = w / (d * c);
      const auto ps = grid(d, c, t);
      INFO(ps->sizes().str());
      const int rank = ps->world_rank();
      const dist::GridCoordinates at = ps->coordinates();
      CHECK(dist::grid_rank(at, ps->sizes()) == rank);
      CHECK(rank == (at.data * c + at.chunk) * t + at.tensor);
      // Each group holds exactly the ranks that agree on the other coordinates, in coordinate order.
      auto expect = [&](const dist::ProcessGroup& g, int64_t size, int64_t index, auto same) {
        CHECK(g.size() == size);
        CHECK(g.rank() == index);
        std::set<int64_t> expected;
        for (int64_t q = 0; q < w; ++q)
          if (same(dist::grid_coordinates(q, ps->sizes()))) expected.insert(q);
        CHECK(members(g, rank) == expected);
      };
      expect(ps->tensor(), t, at.tensor, [&](auto o) { return o.data == at.data && o.chunk == at.chunk; });
      expect(ps->chunk(), c, at.chunk, [&](auto o) { return o.data == at.data && o.tensor == at.tensor; });
      expect(ps->data(), d, at.data, [&](auto o) { return o.chunk == at.chunk && o.tensor == at.tensor; });
      expect(ps->data_chunk(), d * c, at.data * c + at.chunk, [&](auto o) { return o.tensor == at.tensor; });
      CHECK(ps->chunk_prev() == (at.chunk > 0 ? at.chunk - 1 : -1));
      CHECK(ps->chunk_next() == (at.chunk + 1 < c ? at.chunk + 1 : -1));
    }
}

TEST_CASE("a grid that does not match the world is one clear error") {
  const int w = dist::initialize_mpi().size;
  const std::string message = error_message([&] { grid(w + 1, 1, 1); });
  CHECK(contains(message, "the grid data " + std::to_string(w + 1) + " x chunk 1 x tensor 1 has " +
                              std::to_string(w + 1) + " ranks but the job has " + std::to_string(w) + " processes"));
  CHECK(contains(error_message([&] { grid(0, 1, w); }), "must be >= 1"));
}

TEST_CASE("MPI backend on CPU tensors: every operation, every dtype, every group") {
  const int w = dist::initialize_mpi().size;
  const auto ps = grid(w, 1, 1);
  const uint64_t seed = shared_seed(ps->world());
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    run_communicator_suite(ps->world().on(Device::cpu()), Device::cpu(), dtype, seed);
    run_communicator_suite(ps->data().on(Device::cpu()), Device::cpu(), dtype, seed + 1);
  }
  if (w % 2 == 0) {  // groups of half the world, side by side
    const auto split = grid(2, w / 2, 1);
    run_communicator_suite(split->chunk().on(Device::cpu()), Device::cpu(), DType::f32, seed + 2);
    run_communicator_suite(split->data().on(Device::cpu()), Device::cpu(), DType::f64, seed + 3);
  }
}

TEST_CASE("a communicator refuses tensors of the other device kind") {
  const auto ps = grid(dist::initialize_mpi().size, 1, 1);
  CHECK(contains(error_message([&] { ps->world().on(Device::cuda(0)); }), "no communicator for CUDA tensors"));
}

TEST_CASE("ranks that disagree on a config are stopped at start") {
  const auto ps = grid(dist::initialize_mpi().size, 1, 1);
  ps->require_same_everywhere("resolved config", "same text");  // no throw
  const std::string text = ps->world_rank() == 1 ? "rank one differs" : "the config";
  CHECK(contains(error_message([&] { ps->require_same_everywhere("resolved config", text); }),
                 "rank 1's resolved config differs from rank 0's"));
}

TEST_CASE("the grid description lists every rank on rank 0") {
  const auto ps = grid(dist::initialize_mpi().size, 1, 1);
  const std::string text = ps->describe_grid();
  if (ps->world_rank() == 0) {
    for (int r = 0; r < ps->world_size(); ++r)
      CHECK(contains(text, "rank " + std::to_string(r) + ": data " + std::to_string(r) + ", chunk 0, tensor 0 on cpu"));
  } else {
    CHECK(text.empty());
  }
}

// The communication pairs of dist/mappings.h as autograd ops (run under mpirun with 2 and 4 ranks):
// each op's forward and backward on rank-dependent inputs against what every rank can compute alone,
// then column- and row-parallel linears built from them against the single-process linear (with a
// gradient check through the communication for the two tensor parallelism's blocks use), and the
// chunk-parallel send/receive pair against a single-process chain. All in f64 on the CPU.
#include <functional>

#include "autograd/engine.h"
#include "dist/communicator_suite.h"
#include "dist/directional_check.h"
#include "dist/mappings.h"
#include "dist/mpi_world.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

std::shared_ptr<dist::ParallelState> world_grid() {
  dist::ParallelOptions o;
  o.sizes = {dist::initialize_mpi().size, 1, 1};
  o.timeout_s = 120;
  return dist::ParallelState::create(o, "cpu");
}

Tensor leaf(const Shape& shape, uint64_t seed) { return random_tensor(shape, seed).set_requires_grad(true); }

void check_close(const Tensor& got, const Tensor& expected, const std::string& what, double tolerance = 1e-12) {
  INFO(what << ": " << got.describe() << " vs " << expected.describe());
  REQUIRE(got.shape() == expected.shape());
  CHECK(relative_error(got, expected) <= tolerance);
}

// Piece r of `full` along `dim` for a group of `size`.
Tensor piece(const Tensor& full, int64_t dim, int r, int size) {
  const int64_t n = full.size(dim) / size;
  return contiguous(slice(full, dim, r * n, (r + 1) * n));
}

}  // namespace

TEST_CASE("each communication op and its backward") {
  const auto ps = world_grid();
  const dist::ProcessGroup& g = ps->world();
  const int r = g.rank(), w = g.size();
  const uint64_t seed = shared_seed(g);
  INFO("seed " << seed << ", rank " << r << " of " << w);
  // Rank q's input / upstream gradient: drawn from seed + q, so every rank knows every rank's.
  auto per_rank = [&](const Shape& shape, uint64_t salt, int q) { return random_tensor(shape, seed + salt + 97 * q); };
  auto summed = [&](const Shape& shape, uint64_t salt) {
    Tensor s = Tensor::zeros(shape, DType::f64);
    for (int q = 0; q < w; ++q) add_(s, per_rank(shape, salt, q));
    return s;
  };
  auto gathered = [&](const Shape& shape, uint64_t salt, int64_t dim) {
    std::vector<Tensor> parts;
    for (int q = 0; q < w; ++q) parts.push_back(per_rank(shape, salt, q));
    return concat(parts, dim);
  };

  SECTION("copy_to_group: identity forward, all-reduce backward") {
    const Tensor x = leaf({3, 4}, seed);
    const Tensor y = dist::copy_to_group(x, g);
    check_close(y, x, "forward");
    backward(sum(mul(y, per_rank({3, 4}, 1, r))));
    check_close(x.grad(), summed({3, 4}, 1), "backward");
  }
  SECTION("reduce_from_group: all-reduce forward, identity backward") {
    const Tensor x = per_rank({3, 4}, 2, r).set_requires_grad(true);
    const Tensor y = dist::reduce_from_group(x, g);
    check_close(y, summed({3, 4}, 2), "forward");
    const Tensor upstream = random_tensor({3, 4}, seed + 3);
    backward(sum(mul(y, upstream)));
    check_close(x.grad(), upstream, "backward");
  }
  SECTION("all_gather: gather forward, reduce-scatter backward") {
    for (int64_t dim : {0, 1}) {
      const Tensor x = per_rank({2, 3}, 4, r).set_requires_grad(true);
      const Tensor y = dist::all_gather(x, g, dim);
      check_close(y, gathered({2, 3}, 4, dim), "forward");
      const Shape full = y.shape();
      backward(sum(mul(y, per_rank(full, 5, r))));
      check_close(x.grad(), piece(summed(full, 5), dim, r, w), "backward");
    }
  }
  SECTION("reduce_scatter: reduce-scatter forward, all-gather backward") {
    for (int64_t dim : {0, 1}) {
      const Shape full = dim == 0 ? Shape{2 * w, 3} : Shape{2, 3 * w};
      const Tensor x = per_rank(full, 6, r).set_requires_grad(true);
      const Tensor y = dist::reduce_scatter(x, g, dim);
      check_close(y, piece(summed(full, 6), dim, r, w), "forward");
      backward(sum(mul(y, per_rank(y.shape(), 7, r))));
      check_close(x.grad(), gathered(y.shape(), 7, dim), "backward");
    }
  }
  SECTION("scatter_to_group: own piece forward, all-gather backward") {
    const Tensor x = leaf({2, 4 * w}, seed + 8);
    const Tensor y = dist::scatter_to_group(x, g, 1);
    check_close(y, piece(x.detach(), 1, r, w), "forward");
    backward(sum(mul(y, per_rank(y.shape(), 9, r))));
    check_close(x.grad(), gathered(y.shape(), 9, 1), "backward");
  }
  SECTION("gather_from_group: gather forward, own piece backward") {
    const Tensor x = per_rank({3, 2}, 10, r).set_requires_grad(true);
    const Tensor y = dist::gather_from_group(x, g, 0);
    check_close(y, gathered({3, 2}, 10, 0), "forward");
    const Tensor upstream = random_tensor(y.shape(), seed + 11);
    backward(sum(mul(y, upstream)));
    check_close(x.grad(), piece(upstream, 0, r, w), "backward");
  }
}

// The single-process reference of the parallel linears: loss = sum(act(x Wᵀ) ⊙ upstream) with x [5, 4w],
// W [2w, 4w] for a group of w ranks, differentiated (x.grad(), w.grad() hold the reference gradients).
struct LinearReference {
  Tensor x, w, upstream;
};

LinearReference linear_reference(uint64_t seed, int ranks, const std::function<Tensor(const Tensor&)>& act) {
  const int64_t rows = 5, in = 4 * ranks, out = 2 * ranks;
  LinearReference ref{leaf({rows, in}, seed), leaf({out, in}, seed + 1), random_tensor({rows, out}, seed + 2)};
  backward(sum(mul(act(linear(ref.x, ref.w)), ref.upstream)));
  return ref;
}

TEST_CASE("column- and row-parallel linears built from the pairs equal the single-process linear") {
  const auto ps = world_grid();
  const dist::ProcessGroup& g = ps->world();
  const int r = g.rank(), w = g.size();
  const uint64_t seed = shared_seed(g);
  INFO("seed " << seed);
  const LinearReference ref = linear_reference(seed, w, [](const Tensor& y) { return y; });
  const Tensor &x_full = ref.x, &w_full = ref.w, &upstream = ref.upstream;
  const int64_t rows = x_full.size(0), in = x_full.size(1);

  SECTION("column-parallel: replicated input, output gathered") {
    const Tensor x = leaf({rows, in}, seed), w_piece = piece(w_full.detach(), 0, r, w).set_requires_grad(true);
    const Tensor y = dist::gather_from_group(linear(dist::copy_to_group(x, g), w_piece), g, 1);
    backward(sum(mul(y, upstream)));
    check_close(x.grad(), x_full.grad(), "dx");
    check_close(w_piece.grad(), piece(w_full.grad(), 0, r, w), "dw");
  }
  SECTION("row-parallel: input scattered, partial outputs all-reduced") {
    const Tensor x = leaf({rows, in}, seed), w_piece = piece(w_full.detach(), 1, r, w).set_requires_grad(true);
    const Tensor y = dist::reduce_from_group(linear(dist::scatter_to_group(x, g, 1), w_piece), g);
    backward(sum(mul(y, upstream)));
    check_close(x.grad(), x_full.grad(), "dx");
    check_close(w_piece.grad(), piece(w_full.grad(), 1, r, w), "dw");
  }
}

TEST_CASE("the model's parallel layers: sharded input gathered, partial outputs reduce-scattered") {
  // Tensor parallelism's two other linears (nn/tensor_parallel.h): column-parallel on a sharded input
  // (all_gather | reduce_scatter; wv) and row-parallel whose partial outputs are reduce-scattered back to
  // a sharded output (reduce_scatter | all_gather; wh2, fc2): against the single-process linear, then
  // a gradient check through the communication by directional derivatives.
  const auto ps = world_grid();
  const dist::ProcessGroup& g = ps->world();
  const int r = g.rank(), w = g.size();
  const uint64_t seed = shared_seed(g);
  INFO("seed " << seed);
  const LinearReference ref = linear_reference(seed, w, [](const Tensor& y) { return tanh(y); });
  const Tensor &x_full = ref.x, &w_full = ref.w, &upstream = ref.upstream;

  SECTION("column-parallel on a sharded input") {
    const Tensor x = piece(x_full.detach(), 1, r, w).set_requires_grad(true);
    const Tensor w_piece = piece(w_full.detach(), 0, r, w).set_requires_grad(true);
    // Each rank's loss term is its columns' share; the total is summed over the group.
    auto loss = [&] {
      const Tensor y = tanh(linear(dist::all_gather(x, g, 1), w_piece));
      return sum(dist::reduce_from_group(reshape(sum(mul(y, piece(upstream, 1, r, w))), {1}), g));
    };
    backward(loss());
    check_close(x.grad(), piece(x_full.grad(), 1, r, w), "dx");
    check_close(w_piece.grad(), piece(w_full.grad(), 0, r, w), "dw");
    check_directional_derivatives(g, loss, {{x, false}, {w_piece, false}}, seed);
  }
  SECTION("row-parallel with its output reduce-scattered") {
    const Tensor x = piece(x_full.detach(), 1, r, w).set_requires_grad(true);
    const Tensor w_piece = piece(w_full.detach(), 1, r, w).set_requires_grad(true);
    auto loss = [&] {
      const Tensor y = tanh(dist::reduce_scatter(linear(x, w_piece), g, 1));
      return sum(dist::reduce_from_group(reshape(sum(mul(y, piece(upstream, 1, r, w))), {1}), g));
    };
    backward(loss());
    check_close(x.grad(), piece(x_full.grad(), 1, r, w), "dx");
    check_close(w_piece.grad(), piece(w_full.grad(), 1, r, w), "dw");
    check_directional_derivatives(g, loss, {{x, false}, {w_piece, false}}, seed);
  }
}

TEST_CASE("send_state / receive_state carry a state and its gradient along a chain of ranks") {
  const auto ps = world_grid();
  const dist::ProcessGroup& g = ps->world();
  const int r = g.rank(), w = g.size();
  const uint64_t seed = shared_seed(g);
  INFO("seed " << seed);
  const int64_t n = 6;
  // Rank q: h_q = tanh(h_{q-1} * a_q + a_q), h_{-1} = 0, and loss_q = sum(2 h_q * b_q); the total loss
  // is the sum over ranks. The reference runs the whole chain here.
  auto a = [&](int q) { return random_tensor({n}, seed + 10 * q); };
  auto b = [&](int q) { return random_tensor({n}, seed + 10 * q + 1); };
  std::vector<Tensor> leaves;
  Tensor h = Tensor::zeros({n}, DType::f64), total = Tensor::zeros({}, DType::f64);
  for (int q = 0; q < w; ++q) {
    leaves.push_back(a(q).set_requires_grad(true));
    h = tanh(add(mul(h, leaves.back()), leaves.back()));
    total = add(total, sum(mul(mul(h, 2.0), b(q))));
  }
  backward(total);

  dist::PendingWork pending;
  const Tensor mine = a(r).set_requires_grad(true);
  const Tensor incoming = r > 0 ? dist::receive_state({n}, DType::f64, Device::cpu(), g, r - 1, 5, pending)
                                : Tensor::zeros({n}, DType::f64);
  CHECK(incoming.requires_grad() == (r > 0));
  const Tensor state = tanh(add(mul(incoming, mine), mine));
  Tensor carrier = mul(state, 2.0);
  if (r + 1 < w) carrier = dist::send_state(carrier, state, g, r + 1, 5, pending);
  backward(sum(mul(carrier, b(r))));
  pending.wait_all();
  check_close(mine.grad(), leaves[r].grad(), "gradient of rank " + std::to_string(r) + "'s input");
}

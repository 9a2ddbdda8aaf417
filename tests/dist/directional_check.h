#pragma once
// A gradient check through communication: a scalar computed collectively over a group (every rank
// gets the same value) from leaves each rank holds, some replicated (the same values on every rank),
// some pieces of a split tensor. Moving every rank's leaves by ±eps along a direction v (the same v
// for a replicated leaf, so the copies stay equal; any v for a piece), the central difference of the
// scalar must equal <g, v> summed over the ranks with each replicated leaf counted once.
//
// v has unit norm over all the leaves of all ranks (each replicated leaf counted once), so the step is
// eps in parameter space whatever the number of leaves. In f64 the central difference then errs by
// eps^2/6 times the third derivative along v (truncation) plus about 1e-16 |f| / eps (rounding): near
// 1e-10 for the models tested (|f| < 10), checked at 1e-6 absolute, while a gradient that misses a piece
// errs by that piece's share of <g, v>, of the order of |g| / sqrt(number of values), 1e-3 and up here.
#include <cmath>
#include <functional>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "dist/parallel_state.h"
#include "support/testing.h"

namespace mgl::testing {

struct CheckedLeaf {
  Tensor tensor;    // f64, requires grad
  bool replicated;  // the same values on every rank of the group
};

inline void check_directional_derivatives(const dist::ProcessGroup& group, const std::function<Tensor()>& scalar,
                                          const std::vector<CheckedLeaf>& leaves, uint64_t seed, int directions = 3) {
  for (const CheckedLeaf& leaf : leaves) leaf.tensor.set_grad(Tensor());
  backward(scalar());
  for (int direction = 0; direction < directions; ++direction) {
    std::vector<Tensor> v;
    double squares = 0;
    for (size_t i = 0; i < leaves.size(); ++i) {
      const CheckedLeaf& leaf = leaves[i];
      const uint64_t salt = seed + 7919 * (direction + 1) + 31 * i + (leaf.replicated ? 0 : 1000003 * (group.rank() + 1));
      v.push_back(random_tensor(leaf.tensor.shape(), salt));
      squares += sum(mul(v.back(), v.back())).item() * (leaf.replicated ? 1.0 / group.size() : 1.0);
    }
    const double norm = std::sqrt(group.sum(squares));
    double analytic = 0;
    for (size_t i = 0; i < leaves.size(); ++i) {
      v[i] = mul(v[i], 1.0 / norm);
      analytic += sum(mul(leaves[i].tensor.grad(), v[i])).item() * (leaves[i].replicated ? 1.0 / group.size() : 1.0);
    }
    analytic = group.sum(analytic);
    const double eps = 1e-5;
    auto moved = [&](double step) {
      NoGradGuard no_grad;
      for (size_t i = 0; i < leaves.size(); ++i) add_(leaves[i].tensor, mul(v[i], step));
      const double value = scalar().item();
      for (size_t i = 0; i < leaves.size(); ++i) add_(leaves[i].tensor, mul(v[i], -step));
      return value;
    };
    const double numeric = (moved(eps) - moved(-eps)) / (2 * eps);
    INFO("direction " << direction << ": central difference " << numeric << ", gradient " << analytic);
    CHECK(std::abs(numeric - analytic) <= 1e-6);
  }
}

}  // namespace mgl::testing

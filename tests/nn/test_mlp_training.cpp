// End to end on the CPU: Linear -> gelu -> Linear, cross_entropy, backward, AdamW. The loss of the
// fixed run in mlp_training.h must fall from about ln 4 (four classes) to below a bound.
#include <cmath>

#include "nn/mlp_training.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("an MLP learns four Gaussian blobs: the loss falls below the bound", "[nn][training]") {
  const int steps = 100;
  const std::vector<double> losses = train_mlp_on_blobs(Device::cpu(), steps);
  REQUIRE(losses.size() == steps + 1);
  // At initialisation the four logits are close to each other: the loss is near ln 4 = 1.386.
  CHECK(losses[0] > 1.0);
  CHECK(losses[0] < 1.6);
  CHECK(losses[10] < losses[0]);
  // Bound: this run reached 0.0277 after 100 steps (measured in the h-nn worktree, with composite
  // stand-ins for linear and cross_entropy); the classes overlap by about 0.6%, so a loss near
  // 0.03 is what a well-fit model gets here. 0.05 leaves room for rounding differences between
  // implementations while failing any run that does not learn (ln 4 = 1.386 at chance).
  CHECK(losses[steps] < 0.05);
  for (double loss : losses) REQUIRE(std::isfinite(loss));
}

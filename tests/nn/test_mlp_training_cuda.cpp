// End to end on CUDA: the run of mlp_training.h on the GPU follows the CPU run step by step. Both
// start from the same weights (drawn on the host) and data; they differ only in the rounding of
// sums (cuBLAS vs the CPU GEMM, kernel reductions), so the losses stay close all the way.
#include <cmath>

#include "nn/mlp_training.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

TEST_CASE("MLP training on CUDA follows the CPU", "[cuda][nn][training]") {
  const int steps = 100;
  const std::vector<double> cpu = train_mlp_on_blobs(Device::cpu(), steps);
  const std::vector<double> gpu = train_mlp_on_blobs(Device::cuda(0), steps);
  REQUIRE(gpu.size() == cpu.size());
  CHECK(std::abs(gpu[0] - cpu[0]) <= 1e-5 * cpu[0]);  // one forward: f32 rounding only
  double worst = 0;
  for (size_t i = 0; i < cpu.size(); ++i) worst = std::max(worst, std::abs(gpu[i] - cpu[i]));
  INFO("CPU final loss " << cpu.back() << ", CUDA final loss " << gpu.back() << ", worst difference " << worst);
  CHECK(worst <= 1e-3);
  CHECK(gpu.back() < 0.05);
}

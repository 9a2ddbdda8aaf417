#pragma once
// The training run shared by test_mlp_training.cpp (CPU: the loss falls below a bound) and
// test_mlp_training_cuda.cpp (CUDA follows the CPU): an MLP learning to tell four Gaussian blobs
// apart. Every random number comes from a fixed seed, so a run is reproducible to the bit on one
// machine and build.
#include <vector>

#include "autograd/engine.h"
#include "nn/adamw.h"
#include "nn/mlp.h"
#include "ops/ops.h"

namespace mgl::testing {

struct Blobs {
  Tensor points;  // [n, 2] f32
  Tensor labels;  // [n] i64 in 0..3
};

// `per_class` points around each of the four centres (+-1.5, +-1.5) with standard deviation 0.6:
// a point crosses an axis into a neighbour's quadrant with probability Phi(-2.5) = 0.6%, so the
// classes are nearly but not perfectly separable.
inline Blobs make_blobs(int64_t per_class, uint64_t seed) {
  const double centres[4][2] = {{1.5, 1.5}, {-1.5, 1.5}, {-1.5, -1.5}, {1.5, -1.5}};
  const int64_t n = 4 * per_class;
  Generator gen(seed);
  const std::vector<double> noise = randn({n, 2}, DType::f64, Device::cpu(), gen).to_vector<double>();
  std::vector<double> points(2 * n);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = i % 4;
    points[2 * i] = centres[i % 4][0] + 0.6 * noise[2 * i];
    points[2 * i + 1] = centres[i % 4][1] + 0.6 * noise[2 * i + 1];
  }
  return {Tensor::from_vector(points, {n, 2}, DType::f32), Tensor::from_vector(labels, {n})};
}

// Trains MLP(2 -> 16 -> 4) on 200 blob points with full-batch AdamW (lr 0.05) on `device` and
// returns the cross-entropy before each step and after the last one (steps + 1 values).
inline std::vector<double> train_mlp_on_blobs(const Device& device, int steps) {
  const Blobs data = make_blobs(50, 7);
  Generator init(11);
  const nn::MLP model(2, 16, 4, {.device = device, .generator = &init});
  nn::AdamW optimizer(model.named_parameters(), {.lr = 0.05});
  const Tensor x = to(data.points, device), y = to(data.labels, device);
  std::vector<double> losses;
  for (int step = 0;; ++step) {
    const Tensor loss = cross_entropy(model.forward(x), y);
    losses.push_back(loss.item());
    if (step == steps) return losses;
    optimizer.zero_grad();
    backward(loss);
    optimizer.step();
  }
}

}  // namespace mgl::testing

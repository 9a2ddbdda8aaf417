// mlp_demo: trains a two-layer perceptron (Linear -> gelu -> Linear, cross-entropy, AdamW) on the
// three-arm spiral task and prints the loss and accuracy as training goes. The smallest program
// that exercises the whole engine: data on the device, forward, backward, optimizer.
//
//   mlp_demo [--device auto|cpu|cuda|cuda:N] [--steps N] [--print-every N] [--hidden N] [--lr X] [--seed N]
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/lib/command_line.h"
#include "apps/lib/trainer.h"
#include "autograd/engine.h"
#include "core/cuda_context.h"
#include "core/random.h"
#include "nn/adamw.h"
#include "nn/mlp.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

struct Settings {
  Device device = Device::cpu();
  int steps = 1000;
  int print_every = 100;
  int hidden = 64;
  double lr = 1e-2;
  uint64_t seed = 0;
};

// Three spiral arms of `per_class` points in the plane (the classic cs231n toy problem): point i of
// arm k sits at radius r = i / (n - 1) and angle 4k + 4r + 0.2 * noise. Not linearly separable.
struct Spirals {
  Tensor points;  // [3n, 2] f32
  Tensor labels;  // [3n] i64
};
Spirals make_spirals(int64_t per_class, Generator& gen) {
  const int64_t classes = 3, n = classes * per_class;
  const std::vector<double> noise = randn({n}, DType::f64, Device::cpu(), gen).to_vector<double>();
  std::vector<double> points(2 * n);
  std::vector<int64_t> labels(n);
  for (int64_t k = 0; k < classes; ++k) {
    for (int64_t i = 0; i < per_class; ++i) {
      const int64_t j = k * per_class + i;
      const double r = static_cast<double>(i) / static_cast<double>(per_class - 1);
      const double angle = 4.0 * static_cast<double>(k) + 4.0 * r + 0.2 * noise[j];
      points[2 * j] = r * std::sin(angle);
      points[2 * j + 1] = r * std::cos(angle);
      labels[j] = k;
    }
  }
  return {Tensor::from_vector(points, {n, 2}, DType::f32), Tensor::from_vector(labels, {n})};
}

// Fraction of rows whose largest logit is at the label (read on the host).
double accuracy(const Tensor& logits, const Tensor& labels) {
  const std::vector<float> z = logits.to_vector<float>();
  const std::vector<int64_t> y = labels.to_vector<int64_t>();
  const int64_t classes = logits.size(1);
  int64_t correct = 0;
  for (size_t row = 0; row < y.size(); ++row) {
    int64_t best = 0;
    for (int64_t c = 1; c < classes; ++c)
      if (z[row * classes + c] > z[row * classes + best]) best = c;
    correct += best == y[row];
  }
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

void run(const Settings& s) {
  require_cuda(s.device, "--device");
  Generator gen(s.seed);
  const Spirals data = make_spirals(100, gen);
  const Tensor x = to(data.points, s.device), y = to(data.labels, s.device);
  const nn::MLP model(2, s.hidden, 3, {.device = s.device, .generator = &gen});
  nn::AdamW optimizer(model.named_parameters(), {.lr = s.lr, .weight_decay = 1e-4});
  std::printf("mlp_demo: %lld spiral points, MLP 2 -> %d -> 3, AdamW lr %g, %d steps on %s\n",
              static_cast<long long>(x.size(0)), s.hidden, s.lr, s.steps, s.device.str().c_str());
  for (int step = 0;; ++step) {
    const Tensor logits = model.forward(x);
    const Tensor loss = cross_entropy(logits, y);
    if (step % s.print_every == 0 || step == s.steps)
      std::printf("step %5d  loss %.4f  accuracy %.3f\n", step, loss.item(), accuracy(logits, y));
    if (step == s.steps) return;
    optimizer.zero_grad();
    backward(loss);
    optimizer.step();
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mlp_demo: a two-layer perceptron trained on the three-arm spiral"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  Settings settings;
  std::string device = "auto";
  app.add_option("--device", device, "auto (CUDA when available), cpu, cuda or cuda:N");
  app.add_option("--steps", settings.steps, "optimizer steps")->check(apps::integer_in(0, 1 << 30));
  app.add_option("--print-every", settings.print_every, "steps between progress lines")
      ->check(apps::integer_in(1, 1 << 30));
  app.add_option("--hidden", settings.hidden, "hidden width")->check(apps::integer_in(1, 1 << 20));
  app.add_option("--lr", settings.lr, "AdamW learning rate")->check(apps::real_in(ValueRange::at_least(0)));
  app.add_option("--seed", settings.seed, "seed of the data and the initialisation")
      ->check(apps::integer_in(0, INT64_MAX));
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "mlp_demo")) return *status;
  try {
    settings.device = apps::resolve_device(device);
    run(settings);
  } catch (const Error& e) {
    std::fprintf(stderr, "mlp_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}

// nn/ SGD with momentum and (coupled) weight decay against a reference loop in f64.
#include <cmath>

#include "nn/sgd.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

TEST_CASE("SGD follows torch.optim.SGD over several steps", "[nn][sgd]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (const SGDOptions options : {SGDOptions{.lr = 0.1}, SGDOptions{.lr = 0.05, .momentum = 0.9},
                                   SGDOptions{.lr = 0.05, .momentum = 0.8, .weight_decay = 0.01}}) {
    INFO("momentum " << options.momentum << " weight decay " << options.weight_decay);
    const Tensor p = random_tensor({4, 9}, seed, DType::f64).set_requires_grad(true);
    SGD optimizer({{"p", p}}, options);
    std::vector<double> ref = p.to_vector<double>(), buffer;
    for (int step = 0; step < 5; ++step) {
      const Tensor g = random_tensor({4, 9}, seed + step + 1, DType::f64);
      p.set_grad(g);
      optimizer.step();
      const std::vector<double> gs = g.to_vector<double>();
      if (buffer.empty()) buffer.assign(ref.size(), 0.0);
      for (size_t i = 0; i < ref.size(); ++i) {
        double d = gs[i] + options.weight_decay * ref[i];
        if (options.momentum != 0) {
          buffer[i] = step == 0 ? d : options.momentum * buffer[i] + d;
          d = buffer[i];
        }
        ref[i] -= options.lr * d;
      }
      // The gradient tensor is not modified by the step.
      CHECK(p.grad().to_vector<double>() == gs);
    }
    const std::vector<double> got = p.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - ref[i]) < 1e-12);
    CHECK(optimizer.momentum_buffer(0).defined() == (options.momentum != 0));
  }
}

TEST_CASE("SGD: parameters without a gradient stay put; bad options are refused", "[nn][sgd]") {
  const Tensor a = Tensor::ones({2}).set_requires_grad(true);
  const Tensor b = Tensor::ones({2}).set_requires_grad(true);
  SGD optimizer({{"a", a}, {"b", b}}, SGDOptions{.lr = 0.5, .momentum = 0.9});
  a.set_grad(Tensor::ones({2}));
  optimizer.step();
  CHECK(a.to_vector<float>() == std::vector<float>{0.5f, 0.5f});
  CHECK(b.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
  CHECK_FALSE(optimizer.momentum_buffer(1).defined());
  optimizer.zero_grad();
  CHECK_FALSE(a.grad().defined());
  optimizer.options().lr = -1;
  a.set_grad(Tensor::ones({2}));
  CHECK(contains(error_message([&] { optimizer.step(); }), "SGD: lr, momentum and weight decay must be >= 0"));
}

// megalodon.cpp as a library: a small graph, its gradients from one backward sweep, checked against calculus.
//   y = sum(tanh(w * x + b))   =>   dy/dw = x (1 - tanh^2),   dy/db = sum(1 - tanh^2)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <megalodon/autograd/engine.h>
#include <megalodon/ops/ops.h>

int main() {
  using namespace mgl;
  const std::vector<float> xs = {1, 2, 3}, ws = {0.5f, -1, 0.25f};
  const float bias = 0.1f;
  const Tensor x = Tensor::from_vector(xs, {3});
  const Tensor w = Tensor::from_vector(ws, {3}).set_requires_grad(true);
  const Tensor b = Tensor::scalar(bias).set_requires_grad(true);
  const Tensor y = sum(tanh(add(mul(w, x), b)));
  backward(y);  // mgl::backward: fills w.grad() and b.grad()
  const std::vector<float> dw = w.grad().to_vector<float>();
  double db = 0, error = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double slope = 1 - std::pow(std::tanh(ws[i] * xs[i] + bias), 2);
    error = std::max(error, std::abs(dw[i] - xs[i] * slope));
    db += slope;
  }
  error = std::max(error, std::abs(b.grad().item() - db));
  std::printf("y = %.6f, dy/dw = [%.6f, %.6f, %.6f], dy/db = %.6f, largest error %.1e\n", y.item(), dw[0], dw[1],
              dw[2], b.grad().item(), error);
  return error < 1e-5 ? 0 : 1;
}

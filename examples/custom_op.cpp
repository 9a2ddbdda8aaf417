// An op written outside megalodon.cpp's tree against the installed library, the way docs/adding-an-op.md
// describes for such ops: its own forward loop and its own hand-derived backward, recorded as one autograd
// node (like a PyTorch custom Function), checked by the library's finite-difference gradcheck, then trained
// through together with the built-in ops.
//   softsign(x) = x / (1 + |x|)        backward: dx = dy / (1 + |x|)^2
#include <cmath>
#include <cstdio>
#include <megalodon/autograd/engine.h>
#include <megalodon/autograd/grad_mode.h>
#include <megalodon/autograd/gradcheck.h>
#include <megalodon/autograd/node.h>
#include <megalodon/core/strided.h>
#include <megalodon/ops/ops.h>

using mgl::Tensor;

namespace {

// out[i] = f(a[i], b[i]) for contiguous CPU tensors of one floating dtype, computed in double.
template <class F>
Tensor map2(const Tensor& a, const Tensor& b, F f) {
  const Tensor ac = mgl::contiguous(a), bc = mgl::contiguous(b);
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  mgl::dispatch_floating(a.dtype(), "softsign", [&](auto tag) {
    using T = decltype(tag);
    const T *pa = ac.data<T>(), *pb = bc.data<T>();
    T* po = out.data<T>();
    for (int64_t i = 0; i < a.numel(); ++i) po[i] = T(f(static_cast<double>(pa[i]), static_cast<double>(pb[i])));
  });
  return out;
}

Tensor softsign(const Tensor& x) {
  MGL_CHECK(x.is_cpu(), "softsign: this example has a CPU loop only, got ", x.describe());
  const Tensor y = map2(x, x, [](double v, double) { return v / (1 + std::abs(v)); });
  // The closure keeps what backward needs (x, detached: never an output, which would be a cycle).
  mgl::autograd::record("softsign", {x}, {y}, [x = x.detach()](const std::vector<Tensor>& grads) {
    const Tensor dx = map2(grads[0], x, [](double dy, double v) { return dy / ((1 + std::abs(v)) * (1 + std::abs(v))); });
    return std::vector<Tensor>{dx};  // one gradient per input
  });
  return y;
}

}  // namespace

int main() {
  // 1. The backward agrees with finite differences (f64, as every op's test in the tree does).
  const Tensor x = Tensor::from_vector(std::vector<double>{-2, -0.5, 0.3, 1.7, 4}, {5}).set_requires_grad(true);
  const mgl::autograd::GradcheckResult check =
      mgl::autograd::gradcheck([](const std::vector<Tensor>& in) { return softsign(in[0]); }, {x});
  std::printf("gradcheck: %s, %lld elements, largest error %.1e\n", check.ok ? "ok" : check.report.c_str(),
              static_cast<long long>(check.checked), check.max_abs_error);

  // 2. In a graph with built-in ops: a few steps of gradient descent on mean((softsign(W a) - t)^2).
  const Tensor a = Tensor::from_vector(std::vector<float>{1, -1, 0.5f}, {1, 3});
  const Tensor target = Tensor::from_vector(std::vector<float>{0.5f, -0.25f}, {1, 2});
  const Tensor w = Tensor::zeros({2, 3}).set_requires_grad(true);
  double first = 0, last = 0;
  for (int step = 0; step < 50; ++step) {
    const Tensor loss = mgl::mean(mgl::pow(mgl::sub(softsign(mgl::linear(a, w)), target), 2.0));
    mgl::backward(loss);
    {
      mgl::NoGradGuard no_grad;  // the update is not part of the graph
      mgl::copy_(w, mgl::sub(w, mgl::mul(w.grad(), 1.0)));
    }
    w.set_grad(Tensor());
    (step == 0 ? first : last) = loss.item();
  }
  std::printf("loss %.4f -> %.4f after 50 steps\n", first, last);
  return check.ok && last < 0.1 * first ? 0 : 1;
}

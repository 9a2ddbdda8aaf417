// autograd/ engine: accumulation, shared subexpressions, deep graphs (no recursion, saved memory
// freed), retain_graph, grad mode, detach, hooks, non-scalar roots, several roots at once, and a leaf's
// gradients in another dtype than the leaf.
#include <pthread.h>

#include <cmath>
#include <exception>
#include <functional>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/allocator.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

Tensor leaf(const std::vector<double>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}).set_requires_grad(true);
}
std::vector<double> grad_of(const Tensor& t) {
  REQUIRE(t.grad().defined());
  return t.grad().to_vector<double>();
}
void check_close(const std::vector<double>& got, const std::vector<double>& expected) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": " << got[i] << " vs " << expected[i]);
    CHECK(std::abs(got[i] - expected[i]) <= 1e-12 * (1 + std::abs(expected[i])));
  }
}

// Runs f on a new thread with a 1 MiB stack and waits for it (assertions stay on the test's thread).
void run_with_small_stack(const std::function<void()>& f) {
  pthread_attr_t attributes;
  REQUIRE(pthread_attr_init(&attributes) == 0);
  REQUIRE(pthread_attr_setstacksize(&attributes, 1 << 20) == 0);
  std::exception_ptr error;
  auto call = [&] {
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  };
  using Call = decltype(call);
  pthread_t thread;
  auto start = [](void* c) -> void* {
    (*static_cast<Call*>(c))();
    return nullptr;
  };
  REQUIRE(pthread_create(&thread, &attributes, start, &call) == 0);
  REQUIRE(pthread_join(thread, nullptr) == 0);
  pthread_attr_destroy(&attributes);
  if (error) std::rethrow_exception(error);
}

}  // namespace

TEST_CASE("gradients accumulate into .grad across backward calls", "[autograd][engine]") {
  const Tensor x = leaf({1.0, -2.0, 3.0});
  backward(sum(x * x));  // d/dx = 2x
  check_close(grad_of(x), {2, -4, 6});
  const Tensor first_grad = x.grad();
  backward(sum(x * 3.0));  // + 3
  check_close(grad_of(x), {5, -1, 9});
  CHECK(x.grad().is_same(first_grad));  // accumulated in place, same tensor
  x.set_grad(Tensor());  // what zero_grad does
  backward(sum(x));
  check_close(grad_of(x), {1, 1, 1});
}

TEST_CASE("a tensor used twice (diamond) receives the sum of both paths", "[autograd][engine]") {
  const Tensor x = leaf({0.5, -1.0});
  const Tensor a = exp(x);          // used by both branches
  const Tensor out = sum(a * a + a);  // d/dx = (2a + 1) a
  backward(out);
  std::vector<double> expected;
  for (double v : {0.5, -1.0}) expected.push_back((2 * std::exp(v) + 1) * std::exp(v));
  check_close(grad_of(x), expected);
  // x * x: the same leaf as both inputs of one node.
  const Tensor y = leaf({3.0});
  backward(sum(y * y));
  check_close(grad_of(y), {6});
}

TEST_CASE("gradients summed in place never change a tensor seen elsewhere", "[autograd][engine]") {
  // The engine adds a later gradient into the first one in place when nothing else holds the first
  // (autograd/engine.cpp, accumulate). Here the first gradient reaching p is shared: the backward of
  // p + q hands one tensor to both p and q. Chains of (· 1.0) make p's and q's other gradients arrive
  // after it, p's before q's node runs, so summing into the shared tensor in place would change q's
  // gradient. Then sum(y) hands y a broadcast view first, which must not be summed into either.
  const std::vector<double> xs = {0.5, -1.0, 2.0}, w = {1.5, -2.0, 0.25}, u = {0.5, 4.0, -1.0}, v = {-3.0, 0.75, 2.0};
  auto constant = [](const std::vector<double>& values) { return Tensor::from_vector(values, {3}); };
  auto delayed = [](Tensor t, int links) {
    for (int i = 0; i < links; ++i) t = t * 1.0;
    return t;
  };
  const Tensor x = leaf(xs);
  const Tensor p = exp(x), q = x * 3.0;
  backward(sum((p + q) * constant(w)) + sum(delayed(p * constant(v), 2)) + sum(delayed(q * constant(u), 6)));
  std::vector<double> expected;
  for (int i = 0; i < 3; ++i) expected.push_back((w[i] + v[i]) * std::exp(xs[i]) + (w[i] + u[i]) * 3);
  check_close(grad_of(x), expected);

  const Tensor z = leaf(xs);
  const Tensor y = exp(z);
  backward(sum(y) + sum(delayed(y * constant(v), 2)));
  expected.clear();
  for (int i = 0; i < 3; ++i) expected.push_back((1 + v[i]) * std::exp(xs[i]));
  check_close(grad_of(z), expected);
}

TEST_CASE("deep chains: 100k ops, no recursion, saved tensors freed", "[autograd][engine]") {
  // Everything runs on a thread with a 1 MiB stack: recursing once per node (in backward or in
  // the graph's destruction) would overflow it in any build type.
  const int64_t depth = 100000;
  const Device cpu = Device::cpu();
  const Tensor x = leaf({0.5, -0.25});  // 16 bytes per tensor
  const int64_t base = memory_stats(cpu).current_bytes;
  int64_t after_forward = 0, after_backward = 0, after_teardown = 0, after_unused_graph = 0;
  run_with_small_stack([&] {
    {
      Tensor y = x;
      for (int64_t i = 0; i < depth; ++i) y = tanh(y);  // each node saves its output
      after_forward = memory_stats(cpu).current_bytes;
      backward(sum(y));
      // The graph is still reachable from y, but every node has dropped what it saved.
      after_backward = memory_stats(cpu).current_bytes;
    }  // dropping y destroys the 100k-node graph
    after_teardown = memory_stats(cpu).current_bytes;
    {
      // A graph that never runs backward is torn down the same way.
      Tensor y = x;
      for (int64_t i = 0; i < depth; ++i) y = y * 1.0;
    }
    after_unused_graph = memory_stats(cpu).current_bytes;
  });
  CHECK(after_forward - base >= depth * 16);
  CHECK(after_backward - base == 2 * 16);  // y itself and x.grad
  CHECK(after_teardown - base == 16);      // x.grad
  CHECK(after_unused_graph - base == 16);
  // The derivative of the chain, prod (1 - y_i^2) over its outputs, recomputed on the host.
  std::vector<double> expected;
  for (double v : {0.5, -0.25}) {
    double g = 1;
    for (int64_t i = 0; i < depth; ++i) {
      v = std::tanh(v);
      g *= 1 - v * v;
    }
    expected.push_back(g);
  }
  const std::vector<double> got = grad_of(x);
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - expected[i]) <= 1e-9 * std::abs(expected[i]));
}

TEST_CASE("retain_graph: a second backward needs it", "[autograd][engine]") {
  const Tensor x = leaf({2.0});
  {
    const Tensor out = sum(x * x);
    backward(out);
    const std::string message = error_message([&] { backward(out); });
    CHECK(contains(message, "backward called a second time"));
    CHECK(contains(message, "retain_graph"));
  }
  x.set_grad(Tensor());
  const Tensor out = sum(x * x);
  backward(out, {}, /*retain_graph=*/true);
  backward(out);  // the graph was kept: works, and accumulates
  check_close(grad_of(x), {8});
}

TEST_CASE("NoGradGuard: nothing is recorded inside, and it nests", "[autograd][engine]") {
  const Tensor x = leaf({1.0, 2.0});
  CHECK(grad_enabled());
  {
    NoGradGuard outer;
    CHECK_FALSE(grad_enabled());
    const Tensor y = x * x;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    {
      NoGradGuard inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());  // the inner guard restores the outer state
    CHECK(contains(error_message([&] { backward(sum(y)); }), "does not require grad"));
  }
  CHECK(grad_enabled());
  CHECK((x * x).requires_grad());
}

TEST_CASE("detach cuts the graph but shares the values", "[autograd][engine]") {
  const Tensor x = leaf({3.0, -1.0});
  const Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.grad_fn() == nullptr);
  CHECK(d.storage() == x.storage());
  // out = x * stop_gradient(x): only the first factor is differentiated, d/dx = x.
  backward(sum(x * x.detach()));
  check_close(grad_of(x), {3, -1});
  // Detaching an intermediate result.
  const Tensor y = exp(x);
  const Tensor yd = y.detach();
  CHECK(yd.is_leaf());
  CHECK_FALSE(yd.requires_grad());
}

TEST_CASE("register_hook: sees the complete gradient once and may replace it", "[autograd][engine][hooks]") {
  const Tensor x = leaf({1.0, 2.0});
  const Tensor h = x * 2.0;  // an intermediate used twice below
  int calls = 0;
  std::vector<double> seen;
  autograd::register_hook(h, [&](const Tensor& g) {
    ++calls;
    seen = g.to_vector<double>();
    return g * 10.0;  // replace the gradient flowing on to x
  });
  backward(sum(h * 3.0 + h));  // dout/dh = 4 (both uses summed before the hook)
  CHECK(calls == 1);
  check_close(seen, {4, 4});
  check_close(grad_of(x), {80, 80});  // 4 * 10 * 2
  // On a leaf, the hook runs before accumulation into .grad.
  const Tensor w = leaf({1.0});
  autograd::register_hook(w, [](const Tensor& g) { return g * -1.0; });
  backward(sum(w * 5.0));
  check_close(grad_of(w), {-5});
  CHECK(contains(error_message([] { autograd::register_hook(Tensor::ones({1}), [](const Tensor& g) { return g; }); }),
                 "does not require grad"));
}

TEST_CASE("post-accumulate hooks run once per backward, after the gradient is complete", "[autograd][engine][hooks]") {
  const Tensor w = leaf({1.0, -1.0});
  const Tensor x = leaf({2.0, 3.0});
  std::vector<std::vector<double>> seen;
  w.register_post_accumulate_grad_hook([&](const Tensor& param) {
    CHECK(param.is_same(w));
    seen.push_back(param.grad().to_vector<double>());
  });
  // w is used in three places; each contributes a different gradient: x, 2w, and 1.
  const auto loss = [&] { return sum(w * x + w * w + w); };
  backward(loss());
  REQUIRE(seen.size() == 1);
  check_close(seen[0], {2 + 2 + 1, 3 - 2 + 1});  // the complete sum, not a partial one
  backward(loss());
  REQUIRE(seen.size() == 2);  // once more for the second pass, which accumulated on top of the first
  check_close(seen[1], {10, 4});
  // A backward that does not reach w does not call its hook.
  backward(sum(x * 2.0));
  CHECK(seen.size() == 2);
  CHECK(contains(error_message([] { Tensor::ones({1}).register_post_accumulate_grad_hook([](const Tensor&) {}); }),
                 "is not a leaf that requires grad"));
}

TEST_CASE("non-scalar roots need an explicit gradient of their shape", "[autograd][engine]") {
  const Tensor x = leaf({1.0, 2.0, 3.0});
  const Tensor y = x * x;
  const std::string message = error_message([&] { backward(y); });
  CHECK(contains(message, "only defined for one-element roots"));
  CHECK(contains(message, "f64[3] on cpu"));
  const std::string wrong_shape = error_message([&] { backward(y, Tensor::ones({2}, DType::f64)); });
  CHECK(contains(wrong_shape, "f64[2] on cpu"));
  CHECK(contains(wrong_shape, "does not match root f64[3] on cpu"));
  backward(y, Tensor::from_vector<double>({1.0, 0.0, -1.0}, {3}));
  check_close(grad_of(x), {2, 0, -6});
  CHECK(contains(error_message([&] { autograd::backward({y, y}, {Tensor::ones({3}, DType::f64)}); }),
                 "2 roots but 1 gradients"));
}

TEST_CASE("several roots in one pass", "[autograd][engine]") {
  const Tensor x = leaf({1.0, 2.0});
  const Tensor a = sum(x * x);        // 2x
  const Tensor b = sum(exp(x));       // e^x
  autograd::backward({a, b});
  check_close(grad_of(x), {2 + std::exp(1.0), 4 + std::exp(2.0)});
  // One root computed from another: the shared part runs once, after both contributions arrived.
  x.set_grad(Tensor());
  const Tensor h = x * 3.0;
  int calls = 0;
  autograd::register_hook(h, [&](const Tensor& g) {
    ++calls;
    return g;
  });
  const Tensor s = sum(h);       // ds/dh = 1
  const Tensor t = sum(h * h);   // dt/dh = 2h
  autograd::backward({s, t, s});  // s twice: its seed counts twice
  CHECK(calls == 1);
  check_close(grad_of(x), {3 * (2 + 2 * 3.0), 3 * (2 + 2 * 6.0)});
  // A leaf can be a root.
  const Tensor one = leaf({4.0});
  backward(one);
  check_close(grad_of(one), {1});
}

TEST_CASE("only inputs that require grad receive one", "[autograd][engine]") {
  const Tensor x = leaf({1.0, 2.0});
  const Tensor c = Tensor::from_vector<double>({5.0, 7.0}, {2});  // a constant
  const Tensor y = x * c;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(y.grad_fn()->name() == "mul");
  backward(sum(y));
  check_close(grad_of(x), {5, 7});
  CHECK_FALSE(c.grad().defined());
  CHECK(contains(error_message([&] { Tensor(y).set_requires_grad(false); }), "only leaf tensors"));
}

TEST_CASE("a leaf's gradients in another dtype are summed in the leaf's dtype and added to .grad converted",
          "[autograd][engine]") {
  // An f32 leaf read as bf16 by a node whose backward hands the bf16 gradient back as it is (what a
  // compute copy does, nn/compute_copy.h). Its two uses give gradients 1 and 2^-9: summed in bf16 they
  // would round to 1 (bf16 keeps 8 bits), in f32 they are 1 + 2^-9, what two casts at use give.
  auto as_bf16 = [](const Tensor& w) {
    Tensor copy = Tensor::empty(w.shape(), DType::bf16);
    copy_(copy, w);
    autograd::record("as_bf16", {w}, {copy}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
    return copy;
  };
  const Tensor a = Tensor::full({2}, 1.0, DType::bf16), b = Tensor::full({2}, std::ldexp(1.0, -9), DType::bf16);
  for (const bool through_casts : {false, true}) {
    INFO((through_casts ? "cast() at each use" : "bf16 gradients into the leaf"));
    const Tensor w = Tensor::from_vector<float>({0.5f, -2.0f}, {2}).set_requires_grad(true);
    auto read = [&] { return through_casts ? cast(w, DType::bf16) : as_bf16(w); };
    backward(sum(read() * a) + sum(read() * b));
    CHECK(w.grad().dtype() == DType::f32);
    CHECK(w.grad().to_vector<double>() == std::vector<double>(2, 1.0 + std::ldexp(1.0, -9)));
    // One use: the bf16 gradient reaches AccumulateGrad alone and is added converted.
    backward(sum(read() * a));
    CHECK(w.grad().to_vector<double>() == std::vector<double>(2, 2.0 + std::ldexp(1.0, -9)));
    // grad() hands it back in the leaf's dtype.
    const Tensor g = autograd::grad({sum(read() * b)}, {}, {w})[0];
    CHECK(g.dtype() == DType::f32);
    CHECK(g.to_vector<double>() == std::vector<double>(2, std::ldexp(1.0, -9)));
  }
}

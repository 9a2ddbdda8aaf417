// View and layout ops (reshape, permute, transpose, slice, expand, unsqueeze, squeeze, contiguous,
// to, cast) and the factories: values, which results share storage, finite-difference gradients in
// f64, and bad inputs.
#include "ops/ops.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

bool has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }

// 0, 1, 2, ... as f32 in `shape`.
Tensor iota(const Shape& shape) { return cast(reshape(arange(numel(shape)), shape), DType::f32); }

bool shares_storage(const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); }

}  // namespace

TEST_CASE("reshape: values, -1, and when it is a view", "[ops][views]") {
  Tensor x = iota({2, 3, 4});
  Tensor y = reshape(x, {4, -1});
  CHECK(y.shape() == Shape{4, 6});
  CHECK(shares_storage(x, y));
  CHECK(y.to_vector<float>() == x.to_vector<float>());
  CHECK(reshape(x, {-1}).shape() == Shape{24});
  CHECK(reshape(x, {2, 3, 4}).is_same(x));

  // Splitting one dim of a transposed tensor is still a view (the pieces get strides 12 and 6).
  Tensor t = transpose(iota({4, 2, 3}), 0, 1);  // [2, 4, 3], strides [3, 6, 1]
  Tensor split_dim = reshape(t, {2, 2, 2, 3});
  CHECK(shares_storage(split_dim, t));
  CHECK(split_dim.strides() == Shape{3, 12, 6, 1});
  CHECK(split_dim.to_vector<float>() == contiguous(t).to_vector<float>());
  // Merging the transposed dims cannot be a view: it copies, with the right values.
  Tensor merged = reshape(t, {8, 3});
  CHECK_FALSE(shares_storage(merged, t));
  CHECK(merged.to_vector<float>() == contiguous(t).to_vector<float>());
  // A strided slice keeps its step when a dim is split.
  Tensor s = slice(iota({12}), 0, 0, 12, 2);  // 0, 2, ..., 22
  Tensor s2 = reshape(s, {2, 3});
  CHECK(shares_storage(s2, s));
  CHECK(s2.to_vector<float>() == std::vector<float>{0, 2, 4, 6, 8, 10});
  // Zero-element and 0-dim tensors.
  CHECK(reshape(Tensor::zeros({0, 3}), {3, 1, 0}).shape() == Shape{3, 1, 0});
  CHECK(has(error_message([] { reshape(Tensor::zeros({0, 3}), {3, 0, -1}); }), "cannot infer"));  // -1 is ambiguous
  CHECK(reshape(Tensor::scalar(5.0), {1, 1}).to_vector<float>() == std::vector<float>{5});
  CHECK(reshape(Tensor::ones({1, 1}), {}).item() == 1.0);
}

TEST_CASE("reshape: views and copies of strided inputs read the same values as a contiguous copy", "[ops][views]") {
  const Tensor base = iota({4, 6, 2});
  const std::pair<const char*, Tensor> inputs[] = {
      {"transpose 0 1", transpose(base, 0, 1)},
      {"transpose 1 2", transpose(base, 1, 2)},
      {"permute 2 0 1", permute(base, {2, 0, 1})},
      {"slice step 2", slice(base, 1, 0, 6, 2)},
      {"slice rows", slice(base, 0, 1, 3)},
      {"expand", expand(slice(base, 2, 0, 1), {4, 6, 2})},
  };
  const Shape targets[] = {{-1}, {2, -1}, {-1, 2}, {4, 3, -1}, {2, 2, 3, -1}, {1, -1, 1}, {-1, 1, 3}};
  for (const auto& [name, x] : inputs) {
    for (const Shape& target : targets) {
      INFO(name << " " << shape_str(x.shape()) << " strides " << shape_str(x.strides()) << " -> " << shape_str(target));
      CHECK(reshape(x, target).to_vector<float>() == contiguous(x).to_vector<float>());
    }
  }
}

TEST_CASE("reshape: gradients for contiguous and non-contiguous inputs", "[ops][views]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor x = random_tensor({2, 3, 4}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return reshape(in[0], {4, -1}); }, {x});
  // Non-contiguous: a viewable split and a copying merge.
  check_gradients([](const std::vector<Tensor>& in) { return reshape(transpose(in[0], 0, 1), {3, 2, 2, 2}); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return reshape(transpose(in[0], 0, 2), {-1, 6}); }, {x});
  check_gradients([](const std::vector<Tensor>& in) { return reshape(slice(in[0], 2, 0, 4, 2), {-1}); }, {x});
}

TEST_CASE("permute and transpose: values and gradients", "[ops][views]") {
  Tensor x = iota({2, 3});
  Tensor t = transpose(x, 0, -1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(shares_storage(t, x));
  CHECK(t.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  Tensor p = permute(iota({2, 3, 4}), {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(permute(iota({2, 3, 4}), {-1, 0, 1}).strides() == p.strides());

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({2, 3, 4}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return permute(in[0], {1, 2, 0}); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return transpose(in[0], 0, 2); }, {a});
  // permute of a permuted view composes.
  check_gradients([](const std::vector<Tensor>& in) { return permute(transpose(in[0], 1, 2), {2, 0, 1}); }, {a});
}

TEST_CASE("slice: steps, negative indices, clamping, and gradients", "[ops][views]") {
  Tensor x = iota({10});
  CHECK(slice(x, 0, 2, 8, 3).to_vector<float>() == std::vector<float>{2, 5});
  CHECK(slice(x, 0, -3, 10).to_vector<float>() == std::vector<float>{7, 8, 9});
  CHECK(slice(x, 0, 1, -1, 4).to_vector<float>() == std::vector<float>{1, 5});
  CHECK(slice(x, 0, -100, 2).to_vector<float>() == std::vector<float>{0, 1});  // clamped to the dim
  CHECK(slice(x, 0, 4, 100).numel() == 6);
  CHECK(slice(x, 0, 7, 3).numel() == 0);  // end before start: empty
  Tensor m = iota({3, 4});
  Tensor cols = slice(m, -1, 1, 4, 2);
  CHECK(cols.shape() == Shape{3, 2});
  CHECK(cols.to_vector<float>() == std::vector<float>{1, 3, 5, 7, 9, 11});
  // A slice is a view: writing through it changes the original.
  fill_(slice(m, 0, 1, 2), -1.0);
  CHECK(m.to_vector<float>() == std::vector<float>{0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11});

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({4, 7}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return slice(in[0], 1, 1, 7, 2); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return slice(in[0], 0, -3, -1); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return slice(transpose(in[0], 0, 1), 0, 5, 1000, 1); }, {a});
  // Two overlapping slices of one input: their gradients add.
  check_gradients([](const std::vector<Tensor>& in) { return add(slice(in[0], 1, 0, 4), slice(in[0], 1, 3, 7)); }, {a});
}

TEST_CASE("expand: broadcast views and gradients", "[ops][views]") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3, 1});
  Tensor e = expand(x, {2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(shares_storage(e, x));
  const std::vector<float> block = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
  std::vector<float> twice = block;
  twice.insert(twice.end(), block.begin(), block.end());
  CHECK(e.to_vector<float>() == twice);
  CHECK(expand(x, {3, 1}).is_same(x));

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 1}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return expand(in[0], {2, 3, 5}); }, {a});
  Tensor s = random_tensor({}, seed + 1).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return expand(in[0], {4, 2}); }, {s});
}

TEST_CASE("unsqueeze and squeeze: views for any input, and gradients", "[ops][views]") {
  Tensor x = iota({2, 3});
  CHECK(unsqueeze(x, 0).shape() == Shape{1, 2, 3});
  CHECK(unsqueeze(x, -1).shape() == Shape{2, 3, 1});
  CHECK(unsqueeze(x, 1).shape() == Shape{2, 1, 3});
  CHECK(squeeze(unsqueeze(x, 1), 1).shape() == Shape{2, 3});
  CHECK(squeeze(Tensor::zeros({2, 1}), -1).shape() == Shape{2});
  Tensor t = transpose(x, 0, 1);  // non-contiguous
  Tensor u = unsqueeze(t, 1);
  CHECK(shares_storage(u, t));
  CHECK(u.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(shares_storage(squeeze(u, 1), t));

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 1, 2}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return unsqueeze(transpose(in[0], 0, 2), 0); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return squeeze(in[0], 1); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return squeeze(permute(in[0], {1, 2, 0}), 0); }, {a});
}

TEST_CASE("contiguous: copies only non-contiguous inputs, gradient passes through", "[ops][views]") {
  Tensor x = iota({2, 3});
  CHECK(contiguous(x).is_same(x));
  Tensor t = transpose(x, 0, 1);
  Tensor c = contiguous(t);
  CHECK(c.is_contiguous());
  CHECK_FALSE(shares_storage(c, x));
  CHECK(c.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(contiguous(expand(Tensor::scalar(2.0), {2, 2})).to_vector<float>() == std::vector<float>{2, 2, 2, 2});

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 4}, seed).set_requires_grad(true);
  check_gradients([](const std::vector<Tensor>& in) { return contiguous(transpose(in[0], 0, 1)); }, {a});
  check_gradients([](const std::vector<Tensor>& in) { return contiguous(slice(in[0], 1, 0, 4, 3)); }, {a});
}

TEST_CASE("cast: values between dtypes and the gradient of f64 <-> f32", "[ops][views]") {
  Tensor d = Tensor::from_vector<double>({0.1, -2.5, 1e-3, 3.0}, {4});
  const std::vector<float> f = cast(d, DType::f32).to_vector<float>();
  CHECK(f == std::vector<float>{0.1f, -2.5f, 1e-3f, 3.0f});
  CHECK(cast(cast(d, DType::f32), DType::f64).to_vector<double>() ==
        std::vector<double>{double(0.1f), -2.5, double(1e-3f), 3.0});
  // bf16 rounds to nearest, ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (rounds to 1),
  // 1 + 3 * 2^-8 halfway between 1 + 2^-7 and 1 + 2^-6 (rounds to the even 1 + 2^-6).
  Tensor ties = Tensor::from_vector<float>({1.00390625f, 1.01171875f, -3.0f}, {3});
  CHECK(cast(ties, DType::bf16).to_vector<float>() == std::vector<float>{1.0f, 1.015625f, -3.0f});
  CHECK(cast(Tensor::from_vector<float>({1.7f, -1.7f}, {2}), DType::i64).to_vector<int64_t>() ==
        std::vector<int64_t>{1, -1});
  CHECK(cast(arange(3, DType::i32), DType::f64).to_vector<double>() == std::vector<double>{0, 1, 2});
  CHECK(cast(d, DType::f64).is_same(d));
  // Casting a non-contiguous view reads the view's elements.
  CHECK(cast(transpose(iota({2, 2}), 0, 1), DType::f64).to_vector<double>() == std::vector<double>{0, 2, 1, 3});

  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  Tensor a = random_tensor({3, 4}, seed).set_requires_grad(true);
  // f64 -> f32 -> f64 is the identity up to f32 rounding: a step of 1e-2 keeps the rounding error
  // of x +- eps (~6e-8) far below the tolerance, while the derivative (1) is still exact.
  autograd::GradcheckOptions through_f32;
  through_f32.eps = 1e-2;
  through_f32.atol = 1e-4;
  through_f32.rtol = 1e-4;
  check_gradients([](const std::vector<Tensor>& in) { return cast(mul(cast(in[0], DType::f32), 3.0), DType::f64); },
                  {a}, through_f32);
  // Integer results carry no gradient.
  CHECK_FALSE(cast(a, DType::i64).requires_grad());
}

TEST_CASE("to: same device is a no-op, a missing GPU is a clear error", "[ops][views]") {
  Tensor x = iota({2});
  CHECK(to(x, Device::cpu()).is_same(x));
  if (!cuda_available()) CHECK(has(error_message([&] { to(x, Device::cuda(0)); }), "cuda:0"));
}

TEST_CASE("factories: *_like and arange", "[ops][views]") {
  Tensor x = Tensor::empty({2, 3}, DType::f64);
  Tensor z = zeros_like(x), o = ones_like(x), f = full_like(x, -1.5);
  for (const Tensor& t : {z, o, f}) {
    CHECK(t.shape() == x.shape());
    CHECK(t.dtype() == DType::f64);
    CHECK(t.device() == x.device());
    CHECK_FALSE(shares_storage(t, x));
  }
  CHECK(z.to_vector<double>() == std::vector<double>(6, 0.0));
  CHECK(o.to_vector<double>() == std::vector<double>(6, 1.0));
  CHECK(f.to_vector<double>() == std::vector<double>(6, -1.5));
  CHECK(arange(5).dtype() == DType::i64);
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(3, DType::f32).to_vector<float>() == std::vector<float>{0, 1, 2});
  CHECK(arange(0).numel() == 0);
  CHECK(has(error_message([] { arange(-1); }), "arange"));
}

TEST_CASE("view ops: bad inputs throw errors that name the problem", "[ops][views]") {
  Tensor x = Tensor::zeros({2, 3});
  std::string m = error_message([&] { reshape(x, {4, 2}); });
  CHECK(has(m, "reshape"));
  CHECK(has(m, "[4, 2]"));
  CHECK(has(error_message([&] { reshape(x, {-1, -1}); }), "more than one -1"));
  CHECK(has(error_message([&] { reshape(x, {4, -1}); }), "cannot infer"));
  CHECK(has(error_message([&] { reshape(x, {-2, 3}); }), "invalid size"));
  CHECK(has(error_message([&] { permute(x, {0}); }), "permute"));
  CHECK(has(error_message([&] { permute(x, {1, 1}); }), "repeated"));
  CHECK(has(error_message([&] { permute(x, {0, 2}); }), "out of range"));
  CHECK(has(error_message([&] { transpose(x, 0, 2); }), "transpose"));
  CHECK(has(error_message([&] { slice(x, 1, 0, 2, 0); }), "step"));
  CHECK(has(error_message([&] { slice(x, 2, 0, 1); }), "slice"));
  m = error_message([&] { expand(x, {3, 3}); });
  CHECK(has(m, "expand"));
  CHECK(has(m, "[3, 3]"));
  CHECK(has(error_message([&] { expand(x, {3}); }), "expand"));  // fewer dims than the input
  m = error_message([&] { squeeze(x, 0); });
  CHECK(has(m, "squeeze"));
  CHECK(has(m, "not 1"));
  CHECK(has(error_message([&] { unsqueeze(x, 3); }), "unsqueeze"));
  CHECK_THROWS_AS(reshape(Tensor(), {1}), Error);
}

// core/ Tensor: factories, metadata, strided views, raw copy/fill/accumulate between dtypes and
// layouts, version counts, bf16 rounding, host reads, error messages, allocator statistics, device and
// dtype names.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/allocator.h"
#include "core/random.h"
#include "core/tensor.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

constexpr DType kAllDTypes[] = {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64};

float float_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] in f32.
Tensor iota_3x4() {
  std::vector<float> values(12);
  for (int i = 0; i < 12; ++i) values[i] = static_cast<float>(i);
  return Tensor::from_vector(values, {3, 4});
}

}  // namespace

// ---- factories and metadata ----------------------------------------------------------------------

TEST_CASE("factories: shape, dtype, device, strides and values", "[core][tensor]") {
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    Tensor e = Tensor::empty({2, 3, 4}, dtype);
    CHECK(e.defined());
    CHECK(e.shape() == Shape{2, 3, 4});
    CHECK(e.strides() == Shape{12, 4, 1});
    CHECK(e.dtype() == dtype);
    CHECK(e.device() == Device::cpu());
    CHECK(e.is_cpu());
    CHECK_FALSE(e.is_cuda());
    CHECK(e.numel() == 24);
    CHECK(e.dim() == 3);
    CHECK(e.offset() == 0);
    CHECK(e.element_size() == dtype_size(dtype));
    CHECK(e.storage()->bytes == 24 * dtype_size(dtype));
    CHECK(e.is_leaf());
    CHECK_FALSE(e.requires_grad());

    CHECK(Tensor::zeros({2, 3}, dtype).to_vector<double>() == std::vector<double>(6, 0.0));
    CHECK(Tensor::ones({4}, dtype).to_vector<double>() == std::vector<double>(4, 1.0));
    CHECK(Tensor::full({3}, -7.0, dtype).to_vector<double>() == std::vector<double>(3, -7.0));
    const Tensor s = Tensor::scalar(5.0, dtype);
    CHECK(s.dim() == 0);
    CHECK(s.numel() == 1);
    CHECK(s.shape().empty());
    CHECK(s.item() == 5.0);
  }
  // from_vector converts to the requested dtype.
  const Tensor ids = Tensor::from_vector<double>({1.0, 2.0, 3.0, 4.0}, {2, 2}, DType::i32);
  CHECK(ids.dtype() == DType::i32);
  CHECK(ids.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 4});
  // Zero-element tensors are legal and read back as nothing.
  const Tensor none = Tensor::zeros({0, 5});
  CHECK(none.numel() == 0);
  CHECK(none.to_vector<float>().empty());
}

TEST_CASE("factories: bad arguments throw clear errors", "[core][tensor]") {
  CHECK(contains(error_message([] { Tensor::empty({2, -1}); }), "negative size in shape [2, -1]"));
  CHECK(contains(error_message([] { Tensor::from_vector<float>({1, 2, 3}, {2, 2}); }), "3 values for shape [2, 2]"));
}

TEST_CASE("metadata: size and stride accept negative dims and check the range", "[core][tensor]") {
  const Tensor t = Tensor::empty({2, 3, 5});
  CHECK(t.size(0) == 2);
  CHECK(t.size(-1) == 5);
  CHECK(t.size(-3) == 2);
  CHECK(t.stride(1) == 5);
  CHECK(t.stride(-1) == 1);
  CHECK(contains(error_message([&] { t.size(3); }), "dim 3 out of range for a tensor of rank 3"));
  CHECK(contains(error_message([&] { t.stride(-4); }), "dim -4 out of range"));
}

TEST_CASE("an undefined tensor reports itself instead of crashing", "[core][tensor]") {
  const Tensor t;
  CHECK_FALSE(t.defined());
  CHECK(t.describe() == "undefined tensor");
  CHECK(contains(error_message([&] { t.shape(); }), "undefined tensor"));
  CHECK(contains(error_message([&] { t.numel(); }), "undefined tensor"));
}

// ---- views ----------------------------------------------------------------------------------------

TEST_CASE("as_strided: views share storage", "[core][tensor]") {
  const Tensor t = iota_3x4();
  const Tensor transposed = t.as_strided({4, 3}, {1, 4}, 0);
  CHECK(transposed.storage() == t.storage());
  CHECK(transposed.to_vector<float>() == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  const Tensor column = t.as_strided({3}, {4}, 2);  // t[:, 2]
  CHECK(column.offset() == 2);
  CHECK(column.to_vector<float>() == std::vector<float>{2, 6, 10});
  // Writes through a view are seen by every other view of the storage.
  fill_(column, -1.0);
  CHECK(t.to_vector<float>() == std::vector<float>{0, 1, -1, 3, 4, 5, -1, 7, 8, 9, -1, 11});
  // A broadcast view (stride 0) reads one element many times.
  CHECK(t.as_strided({2, 3}, {0, 1}, 4).to_vector<float>() == std::vector<float>{4, 5, -1, 4, 5, -1});
  // Reversed order through a negative stride.
  CHECK(t.as_strided({4}, {-1}, 3).to_vector<float>() == std::vector<float>{3, -1, 1, 0});
  // detach() is a view of the same elements.
  const Tensor d = t.detach();
  CHECK(d.storage() == t.storage());
  CHECK(d.shape() == t.shape());
  CHECK_FALSE(d.is_same(t));
}

TEST_CASE("as_strided: views that reach outside the storage are refused", "[core][tensor]") {
  const Tensor t = iota_3x4();  // 12 elements
  // The last reachable element is exactly the last one: accepted.
  CHECK(t.as_strided({3, 4}, {4, 1}, 0).numel() == 12);
  CHECK(t.as_strided({1}, {1}, 11).item() == 11.0);
  const std::string past_end = error_message([&] { t.as_strided({3, 4}, {4, 1}, 1); });
  CHECK(contains(past_end, "as_strided"));
  CHECK(contains(past_end, "offset 1"));
  CHECK(contains(past_end, "outside storage of 12 elements"));
  CHECK(contains(error_message([&] { t.as_strided({2, 7}, {7, 1}, 0); }), "outside storage"));
  CHECK(contains(error_message([&] { t.as_strided({4}, {1}, -1); }), "outside storage"));
  // A negative stride must not walk before the start of the storage.
  CHECK(contains(error_message([&] { t.as_strided({4}, {-1}, 2); }), "outside storage"));
  CHECK(contains(error_message([&] { t.as_strided({2, 2}, {1}, 0); }), "differ in rank"));
  // An empty view reads nothing, so any offset inside or at the end is fine.
  CHECK(t.as_strided({0, 4}, {4, 1}, 12).numel() == 0);
}

TEST_CASE("is_contiguous: row-major layouts only", "[core][tensor]") {
  const Tensor t = iota_3x4();
  CHECK(t.is_contiguous());
  CHECK(Tensor::scalar(1.0).is_contiguous());
  CHECK_FALSE(t.as_strided({4, 3}, {1, 4}, 0).is_contiguous());  // transposed
  CHECK(t.as_strided({2, 4}, {4, 1}, 4).is_contiguous());        // rows 1..2
  CHECK_FALSE(t.as_strided({3, 2}, {4, 1}, 0).is_contiguous());  // first two columns
  CHECK_FALSE(t.as_strided({3, 4}, {0, 1}, 0).is_contiguous());  // broadcast rows
  // Size-1 dims may carry any stride.
  CHECK(t.as_strided({1, 4}, {99, 1}, 0).is_contiguous());
  CHECK(t.as_strided({3, 1, 4}, {4, 7, 1}, 0).is_contiguous());
}

// ---- copy_, fill_, add_ -----------------------------------------------------------------------------

TEST_CASE("copy_: every pair of dtypes converts exactly representable values exactly", "[core][tensor]") {
  const std::vector<double> values{0, 1, -2, 3, 100, -128, 255, 1024};
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const Tensor src = Tensor::from_vector(values, {2, 4}, from);
      Tensor dst = Tensor::empty({2, 4}, to);
      copy_(dst, src);
      CHECK(dst.to_vector<double>() == values);
    }
  }
}

TEST_CASE("copy_: conversions that must round or truncate", "[core][tensor]") {
  const Tensor src = Tensor::from_vector<double>({2.7, -2.7, 0.5, 1.0 + 1e-12}, {4});
  Tensor as_int = Tensor::empty({4}, DType::i64);
  copy_(as_int, src);
  CHECK(as_int.to_vector<int64_t>() == std::vector<int64_t>{2, -2, 0, 1});  // toward zero, like a C cast
  Tensor as_float = Tensor::empty({4}, DType::f32);
  copy_(as_float, src);
  CHECK(as_float.to_vector<float>() == std::vector<float>{2.7f, -2.7f, 0.5f, 1.0f});
  // 2^24 + 1 is not an f32: it rounds to even.
  const Tensor big = Tensor::from_vector<int64_t>({16777217, 16777219}, {2});
  Tensor big_float = Tensor::empty({2}, DType::f32);
  copy_(big_float, big);
  CHECK(big_float.to_vector<float>() == std::vector<float>{16777216.0f, 16777220.0f});
}

TEST_CASE("copy_: strided source and destination", "[core][tensor]") {
  const Tensor t = iota_3x4();
  // Transposed source into a contiguous f64 destination.
  Tensor dst = Tensor::empty({4, 3}, DType::f64);
  copy_(dst, t.as_strided({4, 3}, {1, 4}, 0));
  CHECK(dst.to_vector<double>() == std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  // Into a strided destination (column 1 of a 3x4 bf16 tensor): other elements are untouched.
  const Tensor host = Tensor::full({3, 4}, 9.0, DType::bf16);
  copy_(host.as_strided({3}, {4}, 1), Tensor::from_vector<int32_t>({-1, -2, -3}, {3}));
  CHECK(host.to_vector<float>() == std::vector<float>{9, -1, 9, 9, 9, -2, 9, 9, 9, -3, 9, 9});
  // Broadcast (stride 0) source.
  Tensor rows = Tensor::empty({2, 4}, DType::i32);
  copy_(rows, t.as_strided({2, 4}, {0, 1}, 8));
  CHECK(rows.to_vector<int32_t>() == std::vector<int32_t>{8, 9, 10, 11, 8, 9, 10, 11});
  // Zero elements: nothing to do, and nothing is read.
  copy_(Tensor::empty({0, 3}), Tensor::empty({0, 3}, DType::i64));
}

TEST_CASE("copy_: shape mismatch names both tensors", "[core][tensor]") {
  const std::string message = error_message([] { copy_(Tensor::empty({2, 3}), Tensor::empty({3}, DType::i64)); });
  CHECK(contains(message, "copy_"));
  CHECK(contains(message, "f32[2, 3] on cpu"));
  CHECK(contains(message, "i64[3] on cpu"));
}

TEST_CASE("bf16: conversion from f32 rounds to nearest, ties to even", "[core][tensor][bf16]") {
  // bf16 keeps 7 fraction bits: near 1 its spacing is 2^-7, so 1 + 2^-8 is exactly half-way.
  const float half = std::ldexp(1.0f, -8);
  const float tiny = std::ldexp(1.0f, -20);
  CHECK(bf16(1.0f + half).bits == 0x3f80);               // tie: 1.0 (even) wins over 1 + 2^-7 (odd)
  CHECK(bf16(1.0f + 3 * half).bits == 0x3f82);           // tie: 1 + 2^-6 (even) over 1 + 2^-7 (odd)
  CHECK(bf16(1.0f + half + tiny).bits == 0x3f81);        // above the tie: up
  CHECK(bf16(1.0f + half - tiny).bits == 0x3f80);        // below the tie: down
  CHECK(bf16(-(1.0f + half)).bits == 0xbf80);            // sign is symmetric
  CHECK(bf16(-(1.0f + 3 * half)).bits == 0xbf82);
  CHECK(bf16(-(1.0f + half + tiny)).bits == 0xbf81);
  // Exactly representable values are unchanged, and conversion back is exact.
  for (float v : {0.0f, 1.0f, -2.0f, 0.15625f, 65280.0f}) {
    INFO(v);
    CHECK(static_cast<float>(bf16(v)) == v);
  }
  CHECK(bf16(-0.0f).bits == 0x8000);
  // Rounding carries into the exponent.
  CHECK(bf16(float_from_bits(0x3fffffff)).bits == 0x4000);  // just below 2 -> 2
  // Subnormals round like everything else (ties to even, down to zero).
  CHECK(bf16(float_from_bits(0x00008000)).bits == 0x0000);
  CHECK(bf16(float_from_bits(0x00018000)).bits == 0x0002);
  CHECK(bf16(float_from_bits(0x00008001)).bits == 0x0001);
}

TEST_CASE("bf16: infinities, overflow and NaN", "[core][tensor][bf16]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(bf16(inf).bits == 0x7f80);
  CHECK(bf16(-inf).bits == 0xff80);
  CHECK(std::isinf(static_cast<float>(bf16(inf))));
  // The largest f32 lies beyond the largest bf16 plus half a spacing: it rounds to infinity.
  CHECK(bf16(std::numeric_limits<float>::max()).bits == 0x7f80);
  CHECK(bf16(-std::numeric_limits<float>::max()).bits == 0xff80);
  // The largest bf16 itself is kept.
  CHECK(bf16(float_from_bits(0x7f7f0000)).bits == 0x7f7f);
  // NaN stays NaN (quiet), with its sign, even when its payload lives only in the low 16 bits,
  // which plain truncation or rounding would turn into infinity.
  for (uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    INFO(std::hex << nan_bits);
    const bf16 b(float_from_bits(nan_bits));
    CHECK(std::isnan(static_cast<float>(b)));
    CHECK((b.bits & 0x0040) != 0);  // quiet bit
    CHECK((b.bits >> 15) == (nan_bits >> 31));
  }
}

TEST_CASE("bf16: copy_ rounds the same way as the scalar conversion", "[core][tensor][bf16]") {
  const float half = std::ldexp(1.0f, -8);
  const std::vector<float> values{1.0f + half, 1.0f + 3 * half, -1.0f - half, std::numeric_limits<float>::infinity(),
                                  std::nanf(""), 1e-40f, 3.3e38f};
  Tensor b = Tensor::empty({7}, DType::bf16);
  copy_(b, Tensor::from_vector(values, {7}));
  const bf16* stored = b.data<bf16>();
  for (size_t i = 0; i < values.size(); ++i) {
    INFO(i);
    CHECK(stored[i].bits == bf16(values[i]).bits);
  }
  // f64 -> bf16 goes through f32 (as on the GPU).
  Tensor from_double = Tensor::empty({1}, DType::bf16);
  copy_(from_double, Tensor::from_vector<double>({1.0 + 1.0 / 256}, {1}));
  CHECK(from_double.data<bf16>()[0].bits == 0x3f80);
}

TEST_CASE("fill_: every dtype, views only touch their elements", "[core][tensor]") {
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Tensor t = Tensor::zeros({3, 4}, dtype);
    fill_(t.as_strided({2, 2}, {4, 2}, 1), 3.0);  // rows 0..1, columns 1 and 3
    CHECK(t.to_vector<double>() == std::vector<double>{0, 3, 0, 3, 0, 3, 0, 3, 0, 0, 0, 0});
  }
  Tensor b = Tensor::empty({2}, DType::bf16);
  fill_(b, 1.0 + 1.0 / 256);  // rounds to even, like every conversion to bf16
  CHECK(b.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
  Tensor i = Tensor::empty({2}, DType::i32);
  fill_(i, -3.9);
  CHECK(i.to_vector<int32_t>() == std::vector<int32_t>{-3, -3});
}

TEST_CASE("add_: accumulates across dtypes and layouts", "[core][tensor]") {
  const Tensor t = iota_3x4();
  Tensor acc = Tensor::ones({4, 3}, DType::f64);
  add_(acc, t.as_strided({4, 3}, {1, 4}, 0));
  add_(acc, t.as_strided({4, 3}, {1, 4}, 0));
  CHECK(acc.to_vector<double>() == std::vector<double>{1, 9, 17, 3, 11, 19, 5, 13, 21, 7, 15, 23});
  Tensor b = Tensor::full({2}, 256.0, DType::bf16);
  add_(b, Tensor::from_vector<float>({1.0f, 3.0f}, {2}));  // 257 is not a bf16: tie to even 256; 259 -> 260
  CHECK(b.to_vector<float>() == std::vector<float>{256.0f, 260.0f});
  // Into a strided destination (the diagonal of a 3x3).
  const Tensor m = Tensor::zeros({3, 3}, DType::i64);
  add_(m.as_strided({3}, {4}, 0), Tensor::from_vector<int64_t>({1, 2, 3}, {3}));
  CHECK(m.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 0, 2, 0, 0, 0, 3});
  const std::string message = error_message([] { add_(Tensor::zeros({2}), Tensor::zeros({3})); });
  CHECK(contains(message, "add_"));
  CHECK(contains(message, "f32[2] on cpu"));
  CHECK(contains(message, "f32[3] on cpu"));
}

TEST_CASE("version: every in-place write bumps the storage's count, shared by its views; reads do not",
          "[core][tensor]") {
  const Tensor t = Tensor::zeros({3, 4});
  const Tensor row = t.as_strided({4}, {1}, 4);  // a view: the same storage, the same count
  const uint64_t start = t.version();
  std::vector<uint64_t> seen = {start};
  auto bumped = [&] {
    const bool once = t.version() == seen.back() + 1 && row.version() == t.version();
    seen.push_back(t.version());
    return once;
  };
  copy_(row, Tensor::ones({4}));
  CHECK(bumped());
  fill_(t, 2.0);
  CHECK(bumped());
  add_(row, Tensor::ones({4}));
  CHECK(bumped());
  uniform_(t, 0, 1);
  CHECK(bumped());
  normal_(row, 0, 1);
  CHECK(bumped());
  truncated_normal_(t, 0, 1, 2);
  CHECK(bumped());
  t.bump_version();  // what a writer through raw_data() does
  CHECK(bumped());
  (void)t.to_vector<float>();
  copy_(Tensor::empty({3, 4}), t);  // t is the source here
  CHECK(t.version() == seen.back());
}

// ---- host reads and messages ------------------------------------------------------------------------

TEST_CASE("to_vector and item read logical (row-major) order in any type", "[core][tensor]") {
  const Tensor t = iota_3x4();
  const Tensor transposed = t.as_strided({4, 3}, {1, 4}, 0);
  CHECK(transposed.to_vector<int64_t>() == std::vector<int64_t>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(transposed.to_vector<bf16>().size() == 12);
  CHECK(Tensor::full({1, 1, 1}, 2.5, DType::bf16).item() == 2.5);
  CHECK(t.as_strided({}, {}, 7).item() == 7.0);
  CHECK(contains(error_message([&] { t.item(); }), "item(): expected a one-element tensor, got f32[3, 4] on cpu"));
}

TEST_CASE("describe() and typed access name dtype, shape and device", "[core][tensor]") {
  CHECK(Tensor::empty({2, 3}).describe() == "f32[2, 3] on cpu");
  CHECK(Tensor::empty({}, DType::bf16).describe() == "bf16[] on cpu");
  CHECK(Tensor::empty({0, 7}, DType::i64).describe() == "i64[0, 7] on cpu");
  const Tensor t = Tensor::zeros({5}, DType::f32);
  CHECK(t.data<float>() == t.raw_data());
  CHECK(contains(error_message([&] { t.data<double>(); }), "data<f64>() called on f32[5] on cpu"));
  // A gradient of the wrong shape is refused with both descriptions.
  const std::string message = error_message([&] { t.set_grad(Tensor::zeros({4})); });
  CHECK(contains(message, "f32[4] on cpu"));
  CHECK(contains(message, "f32[5] on cpu"));
  CHECK(contains(error_message([] { Tensor::zeros({2}, DType::i32).set_requires_grad(true); }),
                 "i32[2] on cpu is not floating point"));
}

// ---- allocator --------------------------------------------------------------------------------------

TEST_CASE("allocator: current and peak bytes follow tensors' lifetimes", "[core][allocator]") {
  const Device cpu = Device::cpu();
  const int64_t base = memory_stats(cpu).current_bytes;
  reset_peak_memory(cpu);
  CHECK(memory_stats(cpu).peak_bytes == base);
  {
    const Tensor a = Tensor::empty({1000}, DType::f32);  // 4000 bytes
    CHECK(memory_stats(cpu).current_bytes == base + 4000);
    {
      const Tensor b = Tensor::empty({10, 100}, DType::f64);  // 8000 bytes
      const Tensor view = b.as_strided({10}, {100}, 0);        // a view allocates nothing
      CHECK(memory_stats(cpu).current_bytes == base + 12000);
      CHECK(memory_stats(cpu).peak_bytes == base + 12000);
    }
    CHECK(memory_stats(cpu).current_bytes == base + 4000);
    CHECK(memory_stats(cpu).peak_bytes == base + 12000);  // the high-water mark stays
    reset_peak_memory(cpu);
    CHECK(memory_stats(cpu).peak_bytes == base + 4000);
    const Tensor c = Tensor::empty({500}, DType::bf16);  // 1000 bytes
    CHECK(memory_stats(cpu).peak_bytes == base + 5000);
  }
  CHECK(memory_stats(cpu).current_bytes == base);
  CHECK(memory_stats(cpu).peak_bytes == base + 5000);
}

TEST_CASE("allocator: statistics of a device index that cannot exist are an error", "[core][allocator]") {
  CHECK(contains(error_message([] { memory_stats(Device::cuda(1000)); }), "cuda:1000"));
  CHECK(contains(error_message([] { reset_peak_memory(Device::cuda(-1)); }), "cuda:-1"));
}

// ---- devices and dtypes by name -------------------------------------------------------------------

TEST_CASE("Device::parse accepts cpu, cuda, cuda:N and nothing else", "[core][device]") {
  CHECK(Device::parse("cpu") == Device::cpu());
  CHECK(Device::parse("cuda") == Device::cuda(0));
  CHECK(Device::parse("cuda:3") == Device::cuda(3));
  CHECK(Device::parse("cuda:3").str() == "cuda:3");
  CHECK(Device::cpu().str() == "cpu");
  for (const char* bad :
       {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:1a", "cuda0", " cpu", "cuda:99999999999"}) {
    INFO("'" << bad << "'");
    const std::string message = error_message([&] { Device::parse(bad); });
    CHECK(contains(message, std::string("invalid device '") + bad + "'"));
    CHECK(contains(message, "expected cpu, cuda or cuda:N"));
  }
}

TEST_CASE("dtype names round-trip; unknown names are errors", "[core][dtype]") {
  for (DType dtype : kAllDTypes) CHECK(dtype_from_name(dtype_name(dtype)) == dtype);
  CHECK(std::string(dtype_name(DType::bf16)) == "bf16");
  for (const char* bad : {"", "float32", "F32", "bfloat16", "int64", "f16"}) {
    INFO("'" << bad << "'");
    const std::string message = error_message([&] { dtype_from_name(bad); });
    CHECK(contains(message, std::string("unknown dtype '") + bad + "'"));
    CHECK(contains(message, "expected f32, bf16, f64, i32 or i64"));
  }
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(is_floating(DType::bf16));
  CHECK_FALSE(is_floating(DType::i32));
  CHECK(is_integer(DType::i64));
}

// core/ Tensor on CUDA: copies host <-> device <-> host with strides and dtype conversions (the
// device must convert exactly as the host does), fill_ and add_ on device views, host reads, error
// messages, uploads that do not wait (core/host_upload.h) and the allocator's statistics for device memory.
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/allocator.h"
#include "core/cuda_context.h"
#include "core/host_upload.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::testing;

MGL_CUDA_TEST_FILE

namespace {

constexpr DType kAllDTypes[] = {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64};
const Device kGpu = Device::cuda(0);

// 0, 1, -2, 3, ... (small integers: exact in every dtype).
std::vector<double> alternating(int64_t n) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i % 200) * (i % 2 ? 1 : -1);
  return v;
}

}  // namespace

TEST_CASE("copies host -> device -> host are exact for every dtype pair", "[cuda][tensor]") {
  const std::vector<double> values = alternating(3 * 517);
  for (DType host_dtype : kAllDTypes) {
    for (DType device_dtype : kAllDTypes) {
      INFO(dtype_name(host_dtype) << " -> " << dtype_name(device_dtype));
      const Tensor host = Tensor::from_vector(values, {3, 517}, host_dtype);
      Tensor device = Tensor::empty({3, 517}, device_dtype, kGpu);
      copy_(device, host);
      CHECK(device.is_cuda());
      // Convert again on the device (device -> device), then bring it back.
      Tensor device_f64 = Tensor::empty({3, 517}, DType::f64, kGpu);
      copy_(device_f64, device);
      Tensor back = Tensor::empty({3, 517}, host_dtype);
      copy_(back, device_f64);
      CHECK(back.to_vector<double>() == values);
    }
  }
}

TEST_CASE("copies with strided sources and destinations on either side", "[cuda][tensor]") {
  const int64_t rows = 37, cols = 300;
  std::vector<float> values(rows * cols);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const Tensor host = Tensor::from_vector(values, {rows, cols});
  const Tensor host_t = host.as_strided({cols, rows}, {1, cols}, 0);  // transposed view

  // Strided host source -> contiguous device destination (converted to f64 on the way).
  Tensor device = Tensor::empty({cols, rows}, DType::f64, kGpu);
  copy_(device, host_t);
  CHECK(device.to_vector<float>() == host_t.to_vector<float>());

  // Strided device source -> strided host destination: every other column of a wider host tensor.
  const Tensor device_t = device.as_strided({rows, cols}, {1, rows}, 0);  // transposes back
  const Tensor wide = Tensor::full({rows, 2 * cols}, -1.0, DType::i64);
  copy_(wide.as_strided({rows, cols}, {2 * cols, 2}, 1), device_t);
  const std::vector<int64_t> got = wide.to_vector<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      REQUIRE(got[r * 2 * cols + 2 * c] == -1);
      REQUIRE(got[r * 2 * cols + 2 * c + 1] == static_cast<int64_t>(values[r * cols + c]));
    }
  }

  // Strided device -> strided device with a dtype change, and a broadcast (stride 0) source.
  const Tensor bf = Tensor::zeros({cols, rows}, DType::bf16, kGpu);
  copy_(bf.as_strided({rows, cols}, {1, rows}, 0), host);  // rounded to bf16 on the device
  Tensor row = Tensor::empty({4, rows}, DType::f32, kGpu);
  copy_(row, bf.as_strided({4, rows}, {0, 1}, 2 * rows));  // row 2 of bf, four times
  std::vector<float> expected;  // rounded on the host
  for (int k = 0; k < 4; ++k)
    for (int64_t r = 0; r < rows; ++r) expected.push_back(static_cast<float>(bf16(values[r * cols + 2])));
  CHECK(row.to_vector<float>() == expected);
}

TEST_CASE("device conversions round like the host: bf16 ties, NaN, infinities, truncation", "[cuda][tensor][bf16]") {
  const float half = std::ldexp(1.0f, -8), inf = std::numeric_limits<float>::infinity();
  uint32_t snan_bits = 0x7f800001u;
  float snan;
  std::memcpy(&snan, &snan_bits, sizeof snan);
  const std::vector<float> values{1.0f + half, 1.0f + 3 * half,          -1.0f - half, inf, -inf, std::nanf(""), snan,
                                  3.4e38f,     1e-40f,                   0.1f,         -0.0f, 257.0f, 65535.0f};
  const int64_t n = static_cast<int64_t>(values.size());
  const Tensor host = Tensor::from_vector(values, {n});
  Tensor host_bf16 = Tensor::empty({n}, DType::bf16);
  copy_(host_bf16, host);
  Tensor device_f32 = Tensor::empty({n}, DType::f32, kGpu);
  copy_(device_f32, host);
  Tensor device_bf16 = Tensor::empty({n}, DType::bf16, kGpu);
  copy_(device_bf16, device_f32);  // rounded on the device
  Tensor back = Tensor::empty({n}, DType::bf16);
  copy_(back, device_bf16);
  for (int64_t i = 0; i < n; ++i) {
    INFO("value " << values[i]);
    const uint16_t host_bits = host_bf16.data<bf16>()[i].bits, device_bits = back.data<bf16>()[i].bits;
    if (std::isnan(values[i])) {
      CHECK(std::isnan(static_cast<float>(back.data<bf16>()[i])));
    } else {
      CHECK(device_bits == host_bits);
    }
  }
  // f64 -> integers truncate toward zero on the device too.
  const Tensor d = Tensor::from_vector<double>({2.7, -2.7, 0.5, -0.5, 1e6 + 0.9}, {5}, DType::f64, kGpu);
  Tensor ints = Tensor::empty({5}, DType::i32, kGpu);
  copy_(ints, d);
  CHECK(ints.to_vector<int32_t>() == std::vector<int32_t>{2, -2, 0, 0, 1000000});
}

// The contiguous fast paths of cuda/copy.cu (memcpy, 8 elements per thread with 16-byte accesses when
// aligned, the tail one by one) must give the general kernel's bits, which are the host's: every dtype
// pair, a length that is not a multiple of 8, views starting one element in (so not 16-byte aligned); and
// the row broadcast and the contiguous fills.
TEST_CASE("contiguous device copies and sums equal the host's bit for bit, aligned or not", "[cuda][tensor]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t n = 1003;
  // A device copy of `host` (any dtype) held in a view of n elements starting `offset` elements in.
  const auto on_device = [&](const Tensor& host, int64_t offset) {
    const Tensor storage = Tensor::zeros({n + 1}, host.dtype(), kGpu);
    const Tensor view = storage.as_strided({n}, {1}, offset);
    copy_(view, host);
    return view;
  };
  const auto host_copy_of = [&](const Tensor& device) {
    Tensor host = Tensor::empty({n}, device.dtype());
    copy_(host, device);
    return host;
  };
  const auto same_bits = [&](const Tensor& a, const Tensor& b) {
    return std::memcmp(a.raw_data(), b.raw_data(), size_t(n) * a.element_size()) == 0;
  };
  // Reals of every size, so that roundings and truncations happen, converted to `dtype` on the host.
  uint64_t draw = seed;
  const auto random_values = [&](DType dtype) {
    Tensor t = Tensor::empty({n}, dtype);
    copy_(t, random_tensor({n}, ++draw, DType::f64, -300.0, 300.0));
    return t;
  };
  for (DType dst_dtype : kAllDTypes) {
    for (DType src_dtype : kAllDTypes) {
      for (auto [dst_offset, src_offset] : {std::pair{0, 0}, std::pair{1, 1}, std::pair{0, 1}}) {
        INFO(dtype_name(src_dtype) << " -> " << dtype_name(dst_dtype) << ", offsets " << dst_offset << ", "
                                   << src_offset);
        const Tensor src = random_values(src_dtype), dst = random_values(dst_dtype);
        const Tensor device_src = on_device(src, src_offset);

        const Tensor copied = on_device(dst, dst_offset);
        copy_(copied, device_src);
        Tensor expected = Tensor::empty({n}, dst_dtype);
        copy_(expected, src);
        CHECK(same_bits(host_copy_of(copied), expected));

        const Tensor summed = on_device(dst, dst_offset);
        add_(summed, device_src);
        Tensor expected_sum = Tensor::empty({n}, dst_dtype);
        copy_(expected_sum, dst);
        add_(expected_sum, src);
        CHECK(same_bits(host_copy_of(summed), expected_sum));
      }
    }
  }
  // A row broadcast (a linear's bias spread over its output): [37] into [5, 3, 37], and a row of one value.
  for (int64_t row : {int64_t(37), int64_t(1)}) {
    for (DType dst_dtype : kAllDTypes) {
      for (DType src_dtype : kAllDTypes) {
        INFO("row " << row << ": " << dtype_name(src_dtype) << " -> " << dtype_name(dst_dtype));
        Tensor host_row = Tensor::empty({row}, src_dtype);
        copy_(host_row, random_tensor({row}, ++draw, DType::f64, -300.0, 300.0));
        const Tensor device_row = Tensor::empty({row}, src_dtype, kGpu);
        copy_(device_row, host_row);
        const Shape shape{5, 3, row};
        const Tensor device_out = Tensor::empty(shape, dst_dtype, kGpu);
        copy_(device_out, device_row.as_strided(shape, {0, 0, 1}, 0));
        Tensor expected = Tensor::empty(shape, dst_dtype);
        copy_(expected, host_row.as_strided(shape, {0, 0, 1}, 0));
        Tensor got = Tensor::empty(shape, dst_dtype);
        copy_(got, device_out);
        CHECK(std::memcmp(got.raw_data(), expected.raw_data(), size_t(5 * 3 * row) * got.element_size()) == 0);
      }
    }
  }
  // A contiguous fill: zero (a memset) and another value.
  for (DType dtype : kAllDTypes) {
    const Tensor t = on_device(Tensor::full({n}, 5.0, dtype), 1);
    fill_(t, 0.0);
    CHECK(t.to_vector<double>() == std::vector<double>(n, 0.0));
    fill_(t, -7.0);
    CHECK(t.to_vector<double>() == std::vector<double>(n, -7.0));
  }
}

TEST_CASE("fill_ and add_ on device views", "[cuda][tensor]") {
  for (DType dtype : kAllDTypes) {
    INFO(dtype_name(dtype));
    const Tensor t = Tensor::zeros({3, 4}, dtype, kGpu);
    fill_(t.as_strided({2, 2}, {4, 2}, 1), 3.0);
    CHECK(t.to_vector<double>() == std::vector<double>{0, 3, 0, 3, 0, 3, 0, 3, 0, 0, 0, 0});
  }
  // Accumulation across dtypes and layouts (how backward sums gradients on the GPU).
  const Tensor acc = Tensor::ones({300, 7}, DType::f32, kGpu);
  std::vector<double> src_values(300 * 7);
  for (size_t i = 0; i < src_values.size(); ++i) src_values[i] = static_cast<double>(i);
  const Tensor src = Tensor::from_vector(src_values, {7, 300}, DType::f64, kGpu);
  add_(acc, src.as_strided({300, 7}, {1, 300}, 0));
  const std::vector<float> got = acc.to_vector<float>();
  for (int64_t i = 0; i < 300; ++i)
    for (int64_t j = 0; j < 7; ++j) REQUIRE(got[i * 7 + j] == static_cast<float>(1 + src_values[j * 300 + i]));
  Tensor b = Tensor::full({2}, 256.0, DType::bf16, kGpu);
  add_(b, Tensor::from_vector<float>({1.0f, 3.0f}, {2}, DType::f32, kGpu));
  CHECK(b.to_vector<float>() == std::vector<float>{256.0f, 260.0f});  // 257 ties to even, 259 -> 260
  // A host and a device tensor cannot be accumulated.
  const std::string message = error_message([&] { add_(b, Tensor::ones({2})); });
  CHECK(contains(message, "bf16[2] on cuda:0"));
  CHECK(contains(message, "f32[2] on cpu"));
}

TEST_CASE("host reads and messages of device tensors", "[cuda][tensor]") {
  const Tensor t = Tensor::full({2, 3}, 1.25, DType::f32, kGpu);
  CHECK(t.describe() == "f32[2, 3] on cuda:0");
  CHECK(t.as_strided({}, {}, 4).item() == 1.25);
  CHECK(t.to_vector<double>() == std::vector<double>(6, 1.25));
  CHECK(contains(error_message([&] { t.item(); }), "f32[2, 3] on cuda:0"));
  const std::string message = error_message([&] { copy_(t, Tensor::zeros({3, 2})); });
  CHECK(contains(message, "f32[2, 3] on cuda:0"));
  CHECK(contains(message, "f32[3, 2] on cpu"));
  const Device missing = Device::cuda(cuda_device_count());
  CHECK(contains(error_message([&] { Tensor::empty({2}, DType::f32, missing); }), "does not exist"));
}

TEST_CASE("uploads do not wait for the device; reads and synchronize() are counted", "[cuda][tensor][upload]") {
  // Many uploads in flight at once, each source freed as soon as its copy is enqueued: the pinned blocks
  // are reused only once their copy is done, so every destination holds its own values.
  const int64_t before = host_synchronizations();
  std::vector<Tensor> uploaded;
  for (int64_t k = 0; k < 64; ++k) {
    const Tensor host = Tensor::full({1000 + k}, static_cast<double>(k), DType::i64);
    uploaded.push_back(to(host, kGpu));
  }
  // Past kMaxPooledUpload the copy waits (loading weights), and is counted.
  const int64_t large = static_cast<int64_t>(kMaxPooledUpload / sizeof(float)) + 1;
  const Tensor big = to(Tensor::full({large}, 2.5, DType::f32), kGpu);
  CHECK(host_synchronizations() == before + 1);
  for (int64_t k = 0; k < 64; ++k) {
    INFO("upload " << k);
    CHECK(uploaded[k].to_vector<int64_t>() == std::vector<int64_t>(1000 + k, k));
  }
  CHECK(host_synchronizations() == before + 1 + 64);  // each read waits once
  const Tensor tail = slice(big, 0, large - 3, large);
  CHECK(tail.to_vector<float>() == std::vector<float>(3, 2.5f));
  synchronize(kGpu);
  CHECK(host_synchronizations() == before + 1 + 64 + 2);
}

TEST_CASE("allocator: device bytes go up and down with tensors; peak and its reset", "[cuda][allocator]") {
  synchronize(kGpu);
  const int64_t base = memory_stats(kGpu).current_bytes;
  const int64_t host_base = memory_stats(Device::cpu()).current_bytes;
  reset_peak_memory(kGpu);
  CHECK(memory_stats(kGpu).peak_bytes == base);
  {
    const Tensor a = Tensor::empty({1 << 20}, DType::f32, kGpu);  // 4 MiB
    CHECK(memory_stats(kGpu).current_bytes == base + (4 << 20));
    {
      const Tensor b = Tensor::empty({1 << 20}, DType::bf16, kGpu);  // 2 MiB
      CHECK(memory_stats(kGpu).current_bytes == base + (6 << 20));
    }
    CHECK(memory_stats(kGpu).current_bytes == base + (4 << 20));
    CHECK(memory_stats(kGpu).peak_bytes == base + (6 << 20));
    reset_peak_memory(kGpu);
    CHECK(memory_stats(kGpu).peak_bytes == base + (4 << 20));
  }
  CHECK(memory_stats(kGpu).current_bytes == base);
  // Device tensors are not counted as host memory.
  CHECK(memory_stats(Device::cpu()).current_bytes == host_base);
}

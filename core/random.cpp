#include <cmath>
#include "core/random.h"

#include "base/philox.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/random.h"

namespace mgl {

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}
void manual_seed(uint64_t seed) { default_generator() = Generator(seed); }

namespace {

// Writes value(i) into element i (row-major) of a CPU tensor.
template <class ValueAt>
void cpu_fill_indexed(const Tensor& t, ValueAt value_at) {
  dispatch_floating(t.dtype(), "random fill", [&](auto tag) {
    using T = decltype(tag);
    T* d = static_cast<T*>(t.raw_data());
    int64_t i = 0;
    for_each_offset<1>(t.shape(), {t.strides()}, [&](const auto& o) {
      const double v = value_at(i++);
      if constexpr (std::is_same_v<T, bf16>) d[o[0]] = bf16(static_cast<float>(v));
      else d[o[0]] = static_cast<T>(v);
    });
  });
}

// The kernels' view of a fill of t from the Philox stream (seed, offset) of `stream`.
cuda::PhiloxFill philox_fill(const Tensor& t, const Generator& stream) {
  cuda::PhiloxFill fill;
  fill.count = t.numel();
  fill.dtype = t.dtype();
  fill.dst = t.raw_data();
  fill.layout = layout_of(t);
  fill.seed = stream.seed;
  fill.offset = stream.offset;
  return fill;
}

}  // namespace

void uniform_(const Tensor& t, double low, double high, Generator& gen) {
  const Generator stream = gen.take();
  t.bump_version();
  if (t.is_cpu()) {
    cpu_fill_indexed(t, [&](int64_t i) { return low + (high - low) * philox::uniform(stream.seed, stream.offset, i); });
    return;
  }
  cuda::UniformFillArgs args;
  args.fill = philox_fill(t, stream);
  args.low = low;
  args.high = high;
  DeviceGuard guard(t.device());
  MGL_ON_CUDA(cuda::uniform_fill(args, compute_stream(t.device())));
}

void normal_(const Tensor& t, double mean, double stddev, Generator& gen) {
  const Generator stream = gen.take();
  t.bump_version();
  if (t.is_cpu()) {
    cpu_fill_indexed(t, [&](int64_t i) { return mean + stddev * philox::normal(stream.seed, stream.offset, i); });
    return;
  }
  cuda::NormalFillArgs args;
  args.fill = philox_fill(t, stream);
  args.mean = mean;
  args.stddev = stddev;
  DeviceGuard guard(t.device());
  MGL_ON_CUDA(cuda::normal_fill(args, compute_stream(t.device())));
}

void truncated_normal_(const Tensor& t, double mean, double stddev, double bound, Generator& gen) {
  // Initialisation only: drawn on the host, then copied, so every device gets the same values.
  MGL_CHECK(bound > 0, "truncated_normal_: bound must be positive, got ", bound);
  const Generator stream = gen.take();
  Tensor host = Tensor::empty(t.shape(), DType::f64);
  double* d = host.data<double>();
  uint64_t next = 0;
  for (int64_t i = 0; i < host.numel(); ++i) {
    double v;
    do v = stddev * philox::normal(stream.seed, stream.offset, next++);
    while (std::abs(v) > bound);
    d[i] = mean + v;
  }
  copy_(t, host);
}

Tensor rand(const Shape& shape, DType dtype, Device device, Generator& gen) {
  Tensor t = Tensor::empty(shape, dtype, device);
  uniform_(t, 0.0, 1.0, gen);
  return t;
}

Tensor randn(const Shape& shape, DType dtype, Device device, Generator& gen) {
  Tensor t = Tensor::empty(shape, dtype, device);
  normal_(t, 0.0, 1.0, gen);
  return t;
}

}  // namespace mgl

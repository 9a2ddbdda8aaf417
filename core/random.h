#pragma once
// Random tensors. A Generator is just (seed, offset): each draw uses the Philox stream at the
// current offset and then advances the offset, so a run is reproducible from the seed alone and
// an op such as dropout can store the (seed, offset) pair instead of its mask.
#include <cstdint>

#include "core/tensor.h"

namespace mgl {

struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // advanced by one per draw (each draw owns its whole Philox counter range)

  explicit Generator(uint64_t seed_ = 0) : seed(seed_) {}
  // Reserves the next stream: returns (seed, offset) and advances.
  Generator take() {
    Generator g = *this;
    ++offset;
    return g;
  }
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // resets the default generator

// In-place fills of a tensor's elements (in row-major order: element i uses Philox index i).
void uniform_(const Tensor& t, double low, double high, Generator& gen = default_generator());
void normal_(const Tensor& t, double mean, double stddev, Generator& gen = default_generator());
// Normal truncated to [mean - bound, mean + bound], by redrawing out-of-range values from the
// following indices (deterministically, on the host).
void truncated_normal_(const Tensor& t, double mean, double stddev, double bound,
                       Generator& gen = default_generator());

Tensor rand(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
            Generator& gen = default_generator());
Tensor randn(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
             Generator& gen = default_generator());

}  // namespace mgl

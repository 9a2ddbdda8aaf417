#pragma once
// Philox 4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11): a
// counter-based generator. Output = f(key, counter) with no state, so element i of a random tensor
// can be computed independently on any thread of any device and CPU and GPU give the same bits.
// A stream is named by (seed, offset): the key is the seed, the counter is (block index, offset).
#include <cmath>
#include <cstdint>

#include "base/dtype.h"

namespace mgl::philox {

struct Uint4 {
  uint32_t x, y, z, w;
};

MGL_HOST_DEVICE inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* high) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *high = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds of the Philox S-box/P-box network with the published constants.
MGL_HOST_DEVICE inline Uint4 philox4x32(Uint4 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(kMul0, counter.x, &hi0);
    const uint32_t lo1 = mulhilo(kMul1, counter.z, &hi1);
    counter = {hi1 ^ counter.y ^ key0, lo1, hi0 ^ counter.w ^ key1, lo0};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// The four 32-bit words of block `block` in the stream (seed, offset).
MGL_HOST_DEVICE inline Uint4 block(uint64_t seed, uint64_t offset, uint64_t block) {
  const Uint4 counter{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                      static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)};
  return philox4x32(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

MGL_HOST_DEVICE inline uint32_t word(const Uint4& u, int lane) {
  return lane == 0 ? u.x : lane == 1 ? u.y : lane == 2 ? u.z : u.w;
}

// Uniform in [0, 1) from the top 24 bits of one word: exactly representable in f32.
MGL_HOST_DEVICE inline float uniform_of_word(uint32_t w) { return static_cast<float>(w >> 8) * (1.0f / 16777216.0f); }

// Uniform of element `index`: word index % 4 of block index / 4, identical on CPU and GPU. A kernel
// that handles four consecutive indices can compute the block once and call uniform_of_word.
MGL_HOST_DEVICE inline float uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  return uniform_of_word(word(block(seed, offset, index / 4), static_cast<int>(index % 4)));
}

// Standard normal by Box-Muller on the pair (words 0, 1) of block index/2; even indices take the
// cosine branch, odd ones the sine. Computed in f64 so CPU and GPU round to the same f32.
MGL_HOST_DEVICE inline double normal(uint64_t seed, uint64_t offset, uint64_t index) {
  const Uint4 u = block(seed, offset, index / 2);
  const double u1 = (static_cast<double>(u.x >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  const double u2 = static_cast<double>(u.y >> 8) * (1.0 / 16777216.0);
  const double radius = sqrt(-2.0 * log(u1));
  const double angle = 6.283185307179586 * u2;
  return index % 2 == 0 ? radius * cos(angle) : radius * sin(angle);
}

}  // namespace mgl::philox

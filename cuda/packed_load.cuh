#pragma once
// 16-byte loads of f32 or bf16 data widened to f32 registers, for bandwidth-bound kernels: a lane
// that reads 16 bytes at a time (8 bf16 or 4 f32 values) lets a warp read 512 contiguous bytes per
// instruction. The load and the widening are separate steps so that a kernel can issue many loads
// (say, a whole tile of weights) before it needs any of the values. Other widths (1, or the 2 of a
// RoPE pair) are the scalar fallback for rows whose length or alignment does not allow vectors.
#include <type_traits>

#include "cuda/common.cuh"

namespace mgl::cuda {

// VEC values loaded one by one: the fallback for widths that are not 16 bytes.
template <class T, int VEC>
struct Values {
  T value[VEC];
};

// Whether VEC values of T fill one 16-byte load.
template <class T, int VEC>
constexpr bool kIsPacked = VEC * sizeof(T) == 16;

// VEC values as loaded: the raw 16 bytes of a vector load, one value, or VEC values.
template <class T, int VEC>
using Packed = std::conditional_t<kIsPacked<T, VEC>, uint4, std::conditional_t<VEC == 1, T, Values<T, VEC>>>;

// Values per 16-byte load of T.
template <class T>
constexpr int kPackedWidth = 16 / int(sizeof(T));

// Through the read-only path: for data no kernel writes while this one runs (weights, caches).
template <class T, int VEC>
__device__ __forceinline__ Packed<T, VEC> load_packed(const T* p) {
  if constexpr (kIsPacked<T, VEC>) {
    return __ldg(reinterpret_cast<const uint4*>(p));
  } else if constexpr (VEC == 1) {
    return *p;
  } else {
    Values<T, VEC> values;
#pragma unroll
    for (int i = 0; i < VEC; ++i) values.value[i] = p[i];
    return values;
  }
}

template <class T, int VEC>
__device__ __forceinline__ void unpack(const Packed<T, VEC>& packed, float (&out)[VEC]) {
  if constexpr (VEC == 1) {
    out[0] = to_float(packed);
  } else if constexpr (!kIsPacked<T, VEC>) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) out[i] = to_float(packed.value[i]);
  } else {
    const unsigned words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, float>) {
        out[i] = __uint_as_float(words[i]);
      } else {
        // A bf16 is the upper half of an f32: each 32-bit word holds values 2i (low half,
        // little-endian) and 2i + 1 (high half), widened by moving them to the top. (No pointer casts
        // of the loaded registers: those would break the compiler's aliasing rules.)
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
  }
}

// VEC consecutive f32 values (16-byte loads when VEC is a multiple of 4, else one by one) through the
// ordinary path: for activations, which the previous kernel may just have written.
template <int VEC>
__device__ __forceinline__ void load_floats(const float* p, float (&out)[VEC]) {
  if constexpr (VEC % 4 != 0) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) out[i] = p[i];
  } else {
#pragma unroll
    for (int i = 0; i < VEC; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      out[i] = v.x, out[i + 1] = v.y, out[i + 2] = v.z, out[i + 3] = v.w;
    }
  }
}

}  // namespace mgl::cuda

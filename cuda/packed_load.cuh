#pragma once
// 16-byte loads of f32 or bf16 data widened to f32 registers, for bandwidth-bound kernels: a lane
// that reads 16 bytes at a time (8 bf16 or 4 f32 values) lets a warp read 512 contiguous bytes per
// instruction. The load and the widening are separate steps so that a kernel can issue many loads
// (say, a whole tile of weights) before it needs any of the values. Other widths (1, or the 2 of a
// RoPE pair) are the scalar fallback for rows whose length or alignment does not allow vectors.
#include <cstdint>
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

// ---- packs of 8 contiguous values, widened to a math type M (f32 or f64) -------------------------------
// For streaming elementwise kernels (copies, casts, unary and binary ops): a thread takes kPack consecutive
// values, read and written with 16-byte accesses when kAligned (the pointer is 16-byte aligned and T is
// f32 or bf16, M f32: 8 bf16 or 2 × 4 f32), one by one otherwise.

constexpr int kPack = 8;

// The type such a kernel computes in: f32 registers for f32 and bf16 values, f64 for f64.
template <class T> struct math_type { using type = float; };
template <> struct math_type<double> { using type = double; };

// Blocks for a contiguous kernel of count elements: a thread per pack.
inline unsigned pack_blocks(int64_t count) { return blocks_for((count + kPack - 1) / kPack); }

// Calls f(T{}) with T the device storage type of a floating `dtype` (f32, bf16, f64); fails on the others.
template <class F>
void dispatch_float_types(DType dtype, F&& f) {
  MGL_CHECK(is_floating(dtype), "elementwise kernel: unsupported dtype ", dtype_name(dtype));
  dispatch_device_type(dtype, [&](auto tag) {
    if constexpr (!std::is_integral_v<decltype(tag)>) f(tag);
  });
}

template <class T>
constexpr bool kNarrow = std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>;

template <class M, class T>
__device__ __forceinline__ M widen(const T* p) {
  if constexpr (std::is_same_v<M, float>) return to_float(*p);
  else return load_as_double(p);
}
template <class M, class T>
__device__ __forceinline__ void narrow(T* p, M v) {
  if constexpr (std::is_same_v<M, float>) *p = from_float<T>(v);
  else store_from_double(p, v);
}

// kPack values at p into v. Ordinary loads (not the read-only path): p may be written by this kernel.
template <bool kAligned, class M, class T>
__device__ __forceinline__ void load_pack(const T* p, M (&v)[kPack]) {
  if constexpr (kAligned && std::is_same_v<M, float> && kNarrow<T>) {
    constexpr int kWidth = kPackedWidth<T>;
#pragma unroll
    for (int j = 0; j < kPack; j += kWidth) {
      float part[kWidth];
      unpack<T, kWidth>(*reinterpret_cast<const uint4*>(p + j), part);
#pragma unroll
      for (int k = 0; k < kWidth; ++k) v[j + k] = part[k];
    }
  } else {
#pragma unroll
    for (int j = 0; j < kPack; ++j) v[j] = widen<M>(p + j);
  }
}

// The 16 bits of a bf16 rounded (to nearest even) from an f32.
__device__ __forceinline__ unsigned bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// kPack values v to p, narrowed from M to T (rounded to nearest even for bf16).
template <bool kAligned, class T, class M>
__device__ __forceinline__ void store_pack(T* p, const M (&v)[kPack]) {
  if constexpr (kAligned && std::is_same_v<M, float> && std::is_same_v<T, float>) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else if constexpr (kAligned && std::is_same_v<M, float> && std::is_same_v<T, __nv_bfloat16>) {
    // Value 2i in the low half of word i, 2i + 1 in the high half (little-endian, as unpack reads them).
    uint4 words;
    words.x = bf16_bits(v[0]) | bf16_bits(v[1]) << 16;
    words.y = bf16_bits(v[2]) | bf16_bits(v[3]) << 16;
    words.z = bf16_bits(v[4]) | bf16_bits(v[5]) << 16;
    words.w = bf16_bits(v[6]) | bf16_bits(v[7]) << 16;
    *reinterpret_cast<uint4*>(p) = words;
  } else {
#pragma unroll
    for (int j = 0; j < kPack; ++j) narrow(p + j, v[j]);
  }
}

// Whether p is 16-byte aligned (host side: picks the kAligned instantiation).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace mgl::cuda

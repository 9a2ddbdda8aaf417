#pragma once
// Element types. f32 and bf16 are the compute types on the GPU (bf16 is storage only: arithmetic
// happens in f32 registers); f64 exists on the CPU for finite-difference gradient checks; i32/i64
// hold token ids and indices.
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__CUDACC__)
#define MGL_HOST_DEVICE __host__ __device__
#else
#define MGL_HOST_DEVICE
#endif

namespace mgl {

enum class DType : uint8_t { f32, bf16, f64, i32, i64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}
constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f64; }
constexpr bool is_integer(DType t) { return t == DType::i32 || t == DType::i64; }
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // "f32", "bf16", ... ; throws on unknown names

// bfloat16: the top 16 bits of an IEEE f32. Conversion from f32 rounds to nearest even, as the
// GPU's __float2bfloat16_rn does, so CPU and CUDA agree bit for bit.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  MGL_HOST_DEVICE explicit bf16(float f) : bits(round_from_float(f)) {}
  MGL_HOST_DEVICE operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  MGL_HOST_DEVICE static uint16_t round_from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
};

// C++ type for each dtype, used by CPU code: dispatch_floating(dtype, [&](auto tag) {
// using T = decltype(tag); ... }).
template <DType D> struct cpp_type;
template <> struct cpp_type<DType::f32> { using type = float; };
template <> struct cpp_type<DType::bf16> { using type = bf16; };
template <> struct cpp_type<DType::f64> { using type = double; };
template <> struct cpp_type<DType::i32> { using type = int32_t; };
template <> struct cpp_type<DType::i64> { using type = int64_t; };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

// The type arithmetic happens in: f64 stays f64, everything else computes in f32.
template <class T> struct compute_type { using type = float; };
template <> struct compute_type<double> { using type = double; };

}  // namespace mgl

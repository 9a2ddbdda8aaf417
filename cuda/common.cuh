#pragma once
// Shared device helpers: dtype loads/stores through f32 registers, launch sizes, dtype dispatch.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "base/cuda_check.h"
#include "base/dtype.h"
#include "base/layout.h"

namespace mgl::cuda {

// Storage types as the GPU sees them: bf16 is __nv_bfloat16 (same bits as mgl::bf16).
template <class T> struct device_type { using type = T; };
template <> struct device_type<bf16> { using type = __nv_bfloat16; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ double to_double(double x) { return x; }
template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Generic conversions used by copies (any dtype to any dtype, through double for exactness).
template <class T> __device__ __forceinline__ double load_as_double(const T* p) { return static_cast<double>(*p); }
template <> __device__ __forceinline__ double load_as_double(const __nv_bfloat16* p) { return __bfloat162float(*p); }
template <class T> __device__ __forceinline__ void store_from_double(T* p, double v) { *p = static_cast<T>(v); }
template <> __device__ __forceinline__ void store_from_double(__nv_bfloat16* p, double v) {
  *p = __float2bfloat16_rn(static_cast<float>(v));
}

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t count, int threads = kThreads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535LL * 32 ? 65535LL * 32 : blocks));
}

// Calls f(T{}) with T the device storage type of `dtype`.
template <class F>
void dispatch_device_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    case DType::f64: f(double{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::i64: f(int64_t{}); return;
  }
}

}  // namespace mgl::cuda

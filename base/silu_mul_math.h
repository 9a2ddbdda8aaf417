#pragma once
// silu_mul's formulas (ops/silu_mul.cpp has the op), written once for the CPU reference (ops/silu_mul.cpp)
// and the kernels (cuda/silu_mul.cu). Plain C++ marked MGL_HOST_DEVICE, so a CPU loop and a GPU thread
// run the same lines; T is the compute type: float for f32 and bf16 tensors, double for f64, and the
// caller rounds each result once to the tensor's dtype.
//
// With σ = σ(a) = 1 / (1 + e^−a) and silu(a) = a·σ:
//   y  = silu(a)·b
//   da = dy·b·silu'(a),   silu'(a) = σ·(1 + a·(1 − σ))
//   db = dy·silu(a)
// σ and silu(a) are apply_unary's sigmoid and silu expressions (base/elementwise_math.h), and the products
// are taken in the order of the unfused ops (silu's backward in ops/silu.cpp, mul's in ops/mul.cpp), so in
// f32 on the CPU silu_mul(a, b) gives silu(a)·b bit for bit and its gradients those of the composition.
#include <math.h>

#include "base/dtype.h"

namespace mgl {

// σ(a) and silu(a) from one exponential.
template <class T>
struct SiluParts {
  T sigmoid, silu;
};
template <class T>
MGL_HOST_DEVICE inline SiluParts<T> silu_parts(T a) {
  const T d = T(1) + exp(-a);
  return {T(1) / d, a / d};
}

// y = silu(a)·b.
template <class T>
MGL_HOST_DEVICE inline T silu_mul_value(T a, T b) {
  return silu_parts(a).silu * b;
}

// The gradients of silu(a)·b for the incoming gradient dy.
template <class T>
struct SiluMulGrads {
  T da, db;
};
template <class T>
MGL_HOST_DEVICE inline SiluMulGrads<T> silu_mul_grads(T dy, T a, T b) {
  const SiluParts<T> p = silu_parts(a);
  return {(dy * b) * (p.sigmoid * (a * (T(1) - p.sigmoid) + T(1))), dy * p.silu};
}

}  // namespace mgl

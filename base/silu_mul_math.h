#pragma once
// silu_mul's formulas (ops/silu_mul.cpp has the op) and silu's backward (ops/silu.cpp), written once for the
// CPU references and the kernels (cuda/silu_mul.cu; silu's through BinaryOp::silu_backward, base/elementwise_math.h,
// in cuda/elementwise.cu's binary kernels). Plain C++ marked MGL_HOST_DEVICE, so a CPU loop and a GPU thread run
// the same lines; T is the compute type: float for f32 and bf16 tensors, double for f64, and the caller rounds
// each result once to the tensor's dtype.
//
// With σ = σ(a) = 1 / (1 + e^−a) and silu(a) = a·σ:
//   silu'(a) = σ·(1 + a·(1 − σ))       (silu_derivative, the piece both ops share)
//   silu:      dx = dy·silu'(x)
//   silu_mul:  y  = silu(a)·b,  da = dy·b·silu'(a),  db = dy·silu(a)
// σ and silu(a) are apply_unary's sigmoid and silu expressions (base/elementwise_math.h), and the products
// are taken in the order of the composition of ops they replace (silu's backward as dy·(s·(x·(1 − s) + 1)) with
// s = sigmoid(x), mul's in ops/mul.cpp), so in f32 on the CPU silu_mul(a, b) gives silu(a)·b bit for bit, and
// the gradients are those of the compositions but for a compiler's contraction of x·(1 − s) + 1 into a fused
// multiply-add (nvcc does it; the CPU build does where the target has FMA instructions). silu_mul's da with
// b = 1 is silu's dx bit for bit (dy·1 is exact).
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

// silu'(a) = σ·(1 + a·(1 − σ)) from σ = σ(a).
template <class T>
MGL_HOST_DEVICE inline T silu_derivative(T a, T sigmoid) {
  return sigmoid * (a * (T(1) - sigmoid) + T(1));
}

// silu's backward: dx = dy·silu'(x).
template <class T>
MGL_HOST_DEVICE inline T silu_grad(T dy, T x) {
  return dy * silu_derivative(x, silu_parts(x).sigmoid);
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
  return {(dy * b) * silu_derivative(a, p.sigmoid), dy * p.silu};
}

}  // namespace mgl

#pragma once
// The scalar math of every elementwise op, written once for the CPU reference and the CUDA
// kernels (host + device). T is the compute type: float (f32 and bf16 tensors) or double (f64).
#include <math.h>

#include "base/dtype.h"
#include "base/silu_mul_math.h"

namespace mgl {

enum class UnaryOp {
  neg, exp, log, sqrt, rsqrt, tanh, sigmoid, silu, gelu, relu,
  add_scalar,       // x + s
  mul_scalar,       // x * s
  pow_scalar,       // x ^ s
  gelu_derivative,  // d gelu / dx = Phi(x) + x * phi(x)
  step,             // 1 if x > 0 else 0 (relu's derivative)
};

enum class BinaryOp {
  add, sub, mul, div, pow,
  eq,             // 1 if a == b else 0 (a mask in the input's dtype; NaN equals nothing)
  silu_backward,  // a · silu'(b): silu's backward in one pass, a = dy, b = x (base/silu_mul_math.h's silu_grad)
};

template <class T>
MGL_HOST_DEVICE inline T apply_unary(UnaryOp op, T x, T s) {
  constexpr T kInvSqrt2 = T(0.70710678118654752440);
  constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::rsqrt: return T(1) / sqrt(x);
    case UnaryOp::tanh: return tanh(x);
    case UnaryOp::sigmoid: return T(1) / (T(1) + exp(-x));
    case UnaryOp::silu: return x / (T(1) + exp(-x));
    case UnaryOp::gelu: return T(0.5) * x * (T(1) + erf(x * kInvSqrt2));
    case UnaryOp::relu: return x > T(0) ? x : T(0);
    case UnaryOp::add_scalar: return x + s;
    case UnaryOp::mul_scalar: return x * s;
    case UnaryOp::pow_scalar: return pow(x, s);
    case UnaryOp::gelu_derivative: return T(0.5) * (T(1) + erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp(T(-0.5) * x * x);
    case UnaryOp::step: return x > T(0) ? T(1) : T(0);
  }
  return x;
}

template <class T>
MGL_HOST_DEVICE inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::pow: return pow(a, b);
    case BinaryOp::eq: return a == b ? T(1) : T(0);
    case BinaryOp::silu_backward: return silu_grad(a, b);
  }
  return a;
}

}  // namespace mgl

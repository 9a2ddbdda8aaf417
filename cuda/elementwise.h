#pragma once
// Elementwise kernels: out (contiguous) = op(x) or op(a, b), inputs read through broadcast layouts.
#include "base/layout.h"
#include "base/elementwise_math.h"

namespace mgl::cuda {

// out[i] = apply_unary(op, x[i], scalar) for the count elements of the output.
struct UnaryArgs {
  UnaryOp op = UnaryOp::neg;
  double scalar = 0;  // s of the *_scalar ops
  int64_t count = 0;
  DType dtype = DType::f32;  // of x and out
  const void* x = nullptr;
  Layout x_layout;
  void* out = nullptr;
};
void unary(const UnaryArgs& args, Stream stream);

// out[i] = apply_binary(op, a[i], b[i]).
struct BinaryArgs {
  BinaryOp op = BinaryOp::add;
  int64_t count = 0;
  DType dtype = DType::f32;  // of a, b and out
  const void* a = nullptr;
  Layout a_layout;
  const void* b = nullptr;
  Layout b_layout;
  void* out = nullptr;
};
void binary(const BinaryArgs& args, Stream stream);

}  // namespace mgl::cuda

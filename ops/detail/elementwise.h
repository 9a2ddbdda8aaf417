#pragma once
// The machinery every elementwise op shares: input checks, broadcasting, output allocation and the
// dispatch to the CPU loop or the CUDA kernel. An op file only adds its math and its backward.
#include "core/tensor.h"
#include "autograd/node.h"
#include "base/elementwise_math.h"

namespace mgl::detail {

// Throws unless x is defined and floating point.
void check_floating(const char* op, const Tensor& x);
// Throws unless a and b are defined, floating, and share dtype and device.
void check_compatible(const char* op, const Tensor& a, const Tensor& b);

// Forward computations only (no graph): y = op(x) and out = op(a, b) with broadcasting.
Tensor unary_forward(const char* op, UnaryOp kind, const Tensor& x, double scalar = 0.0);
Tensor binary_forward(const char* op, BinaryOp kind, const Tensor& a, const Tensor& b);

// A whole unary op: forward, plus a graph node whose backward is dx = backward(dy, saved), where
// `saved` is the input x or the output y, as the op's derivative needs.
enum class Save { input, output };
using UnaryBackward = Tensor (*)(const Tensor& dy, const Tensor& saved);
Tensor unary_op(const char* op, UnaryOp kind, const Tensor& x, Save save, UnaryBackward backward);

}  // namespace mgl::detail

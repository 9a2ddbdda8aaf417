#pragma once
// Elementwise kernels: out (contiguous) = op(x) or op(a, b), inputs read through broadcast layouts.
#include "base/layout.h"
#include "cuda/elementwise_math.h"

namespace mgl::cuda {

void unary(UnaryOp op, double scalar, const void* x, const Layout& x_layout, void* out, DType dtype, int64_t count,
           Stream stream);
void binary(BinaryOp op, const void* a, const Layout& a_layout, const void* b, const Layout& b_layout, void* out,
            DType dtype, int64_t count, Stream stream);

}  // namespace mgl::cuda

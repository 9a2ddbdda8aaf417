#pragma once
// Selection kernel: out[i] = condition[i] != 0 ? a[i] : b[i] over the row-major elements of the
// broadcast shape. Each operand is read through its own (broadcast) layout; out is contiguous.
// a, b and out share `dtype`; the condition may be of any dtype.
#include "base/layout.h"

namespace mgl::cuda {

void where(const void* condition, DType condition_dtype, const Layout& condition_layout, const void* a,
           const Layout& a_layout, const void* b, const Layout& b_layout, void* out, DType dtype, int64_t count,
           Stream stream);

}  // namespace mgl::cuda

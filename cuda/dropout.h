#pragma once
// Dropout kernel: out[i] = keep(i) ? x[i] * scale : 0 over the row-major elements of x, with
// keep(i) = philox::uniform(seed, offset, i) >= p, the same rule the CPU applies (so both give the
// same mask bit for bit). x is read through its layout; out is contiguous.
#include "base/layout.h"

namespace mgl::cuda {

void dropout(const void* x, const Layout& x_layout, void* out, DType dtype, int64_t count, uint64_t seed,
             uint64_t offset, double p, double scale, Stream stream);

}  // namespace mgl::cuda

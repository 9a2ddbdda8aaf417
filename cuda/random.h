#pragma once
// Philox fills on the GPU: the same numbers the CPU produces for the same (seed, offset).
#include "base/layout.h"

namespace mgl::cuda {

void uniform_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                  double low, double high, Stream stream);
void normal_fill(void* dst, DType dtype, const Layout& layout, int64_t count, uint64_t seed, uint64_t offset,
                 double mean, double stddev, Stream stream);

}  // namespace mgl::cuda

#pragma once
// Strided copy with dtype conversion, fill, and accumulate (dst += src) on one device: the raw
// kernels behind core's copy_, fill_ and add_ (the last one sums gradients in backward).
#include "base/layout.h"

namespace mgl::cuda {

void strided_copy(void* dst, DType dst_dtype, const Layout& dst_layout, const void* src, DType src_dtype,
                  const Layout& src_layout, int64_t count, Stream stream);
void fill(void* dst, DType dtype, const Layout& layout, int64_t count, double value, Stream stream);
void accumulate(void* dst, DType dst_dtype, const Layout& dst_layout, const void* src, DType src_dtype,
                const Layout& src_layout, int64_t count, Stream stream);

}  // namespace mgl::cuda

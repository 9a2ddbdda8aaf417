#pragma once
// How kernels see a strided tensor: shape and strides (in elements) by value, up to kMaxDims dims,
// and the stream a kernel is queued on. Plain C++ so that core/ and ops/ can build one without CUDA
// headers. It is the kernels' calling convention, hence namespace mgl::cuda, but it lives in base/
// because core/ builds them (layout_of in core/strided.h) for the kernels it calls itself.
#include <cstdint>

#include "base/dtype.h"

struct CUstream_st;

namespace mgl::cuda {

using Stream = CUstream_st*;

constexpr int kMaxDims = 8;

struct Layout {
  int rank = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // Element offset of the row-major linear index `index` (the i-th element in logical order).
  MGL_HOST_DEVICE int64_t offset_of(int64_t index) const {
    int64_t offset = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t size = shape[d];
      offset += (index % size) * strides[d];
      index /= size;
    }
    return offset;
  }

  // True when offset_of(i) == i for every i (row-major; size-1 dims may have any stride), so a
  // kernel can index the buffer directly.
  MGL_HOST_DEVICE bool is_contiguous() const {
    int64_t expected = 1;
    for (int d = rank - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != expected) return false;
      expected *= shape[d];
    }
    return true;
  }
};

}  // namespace mgl::cuda

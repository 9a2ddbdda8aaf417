#pragma once
// Strided copy with dtype conversion, fill, and accumulate (dst += src) on one device: the raw
// kernels behind core's copy_, fill_ and add_ (the last one sums gradients in backward).
#include "base/layout.h"

namespace mgl::cuda {

// Element i (row-major) of dst and src is at dst + dst_layout.offset_of(i), src + src_layout.offset_of(i);
// the value converts from src_dtype to dst_dtype (through f64).
struct CopyArgs {
  int64_t count = 0;
  void* dst = nullptr;
  DType dst_dtype = DType::f32;
  Layout dst_layout;
  const void* src = nullptr;
  DType src_dtype = DType::f32;
  Layout src_layout;
};
void strided_copy(const CopyArgs& args, Stream stream);  // dst = src
void accumulate(const CopyArgs& args, Stream stream);    // dst += src

// dst[i] = value for the count elements of dst, element i at dst + layout.offset_of(i).
struct FillArgs {
  int64_t count = 0;
  DType dtype = DType::f32;
  void* dst = nullptr;
  Layout layout;
  double value = 0;
};
void fill(const FillArgs& args, Stream stream);

}  // namespace mgl::cuda

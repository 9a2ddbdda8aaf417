#pragma once
// Selection kernel: out[i] = condition[i] != 0 ? a[i] : b[i] over the row-major elements of the
// broadcast shape. Each operand is read through its own (broadcast) layout; out is contiguous.
// a, b and out share `dtype`; the condition may be of any dtype.
#include "base/layout.h"

namespace mgl::cuda {

struct WhereArgs {
  int64_t count = 0;
  DType dtype = DType::f32;  // of a, b and out
  const void* condition = nullptr;
  DType condition_dtype = DType::f32;
  Layout condition_layout;
  const void* a = nullptr;
  Layout a_layout;
  const void* b = nullptr;
  Layout b_layout;
  void* out = nullptr;
};
void where(const WhereArgs& args, Stream stream);

}  // namespace mgl::cuda

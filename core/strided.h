#pragma once
// CPU iteration over strided tensors: the loop every CPU reference kernel is built on.
#include <array>
#include <cstdint>
#include <vector>

#include "base/layout.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace mgl {

// Calls f(offsets) for every element of `shape` in row-major order, where offsets[k] is the
// element offset into operand k (whose strides are strides[k], already broadcast to `shape`).
// Offsets are updated incrementally, like an odometer, so the loop costs O(1) per element; the last
// dimension is a plain inner loop (one addition per operand and element), where the time goes.
template <size_t N, class F>
void for_each_offset(const Shape& shape, const std::array<std::vector<int64_t>, N>& strides, F&& f) {
  const int64_t total = numel(shape);
  if (total == 0) return;
  std::array<int64_t, N> offsets{};
  if (shape.empty()) {  // a scalar
    f(offsets);
    return;
  }
  const size_t outer_rank = shape.size() - 1;
  const int64_t inner = shape[outer_rank];
  std::array<int64_t, N> inner_stride{};
  for (size_t k = 0; k < N; ++k) inner_stride[k] = strides[k][outer_rank];
  std::vector<int64_t> index(outer_rank, 0);
  for (int64_t row = 0; row < total / inner; ++row) {
    std::array<int64_t, N> at = offsets;
    for (int64_t j = 0; j < inner; ++j) {
      f(at);
      for (size_t k = 0; k < N; ++k) at[k] += inner_stride[k];
    }
    for (size_t d = outer_rank; d-- > 0;) {
      if (++index[d] < shape[d]) {
        for (size_t k = 0; k < N; ++k) offsets[k] += strides[k][d];
        break;
      }
      for (size_t k = 0; k < N; ++k) offsets[k] -= strides[k][d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

// The kernel-side description of a tensor's view (checks the rank limit).
cuda::Layout layout_of(const Tensor& t);
cuda::Layout layout_of(const Shape& shape, const std::vector<int64_t>& strides);

// Runs f(T{}) with T the C++ type of `dtype` (floating types only unless integers are allowed).
template <class F>
void dispatch_floating(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    default: MGL_FAIL(op, ": expected a floating dtype (f32, bf16, f64), got ", dtype_name(dtype));
  }
}
template <class F>
void dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::i64: f(int64_t{}); return;
  }
}

}  // namespace mgl

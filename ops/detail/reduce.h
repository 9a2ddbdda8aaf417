#pragma once
// Shared machinery of reductions over a set of dims (sum, mean, max): which dims are reduced,
// the output shape with and without kept dims, and the forward computation on CPU or CUDA.
#include <vector>

#include "core/tensor.h"
#include "cuda/reduce.h"

namespace mgl::detail {

struct Reduction {
  std::vector<bool> reduced;  // per input dim
  Shape kept_shape;           // the output shape with keepdim = true (reduced dims of size 1)
  Shape out_shape;            // the output shape as requested
  int64_t count = 1;          // elements folded into each output
};

// Empty dims means every dim. Repeated or out-of-range dims throw.
Reduction plan_reduction(const char* op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor reduce_forward(const char* op, cuda::ReduceOp kind, const Tensor& x, const Reduction& plan);
// The gradient of a reduced output read back at the input's shape (a broadcast view).
Tensor expand_reduced(const Tensor& grad, const Reduction& plan, const Shape& input_shape);

}  // namespace mgl::detail

#pragma once
// silu_mul's kernels: y = silu(a)·b and its backward in one pass each; ops/silu_mul.cpp has the op,
// base/silu_mul_math.h the formulas the kernels share with the CPU reference. f32, bf16 and f64, computed in
// f32 (f64 for f64) and rounded once to the dtype. Inputs are read through their layouts (any strides, the
// shape of the outputs); outputs are contiguous.
#include "base/layout.h"
#include "base/silu_mul_math.h"

namespace mgl::cuda {

// The two factors, read by both passes, and the element count of the outputs.
struct SiluMulInputs {
  int64_t count = 0;
  DType dtype = DType::f32;  // of every buffer of the pass
  const void* a = nullptr;   // the gate (the silu's argument)
  Layout a_layout;
  const void* b = nullptr;  // the other factor
  Layout b_layout;
};

// y[i] = silu(a[i])·b[i] for the count elements of y.
struct SiluMulForwardArgs {
  SiluMulInputs in;
  void* y = nullptr;  // contiguous, count elements
};
void silu_mul_forward(const SiluMulForwardArgs& args, Stream stream);

// da[i] = dy[i]·b[i]·silu'(a[i]), db[i] = dy[i]·silu(a[i]).
struct SiluMulBackwardArgs {
  SiluMulInputs in;
  const void* dy = nullptr;  // the gradient of y
  Layout dy_layout;
  void* da = nullptr;  // contiguous, count elements
  void* db = nullptr;  // contiguous, count elements
};
void silu_mul_backward(const SiluMulBackwardArgs& args, Stream stream);

}  // namespace mgl::cuda

#pragma once
// The tensor side of every GEMM (matmul, linear): input checks, broadcasting of batch dims,
// describing each operand to the GEMM without a copy when its layout allows (a transposed view is
// read as "stored transposed"), and the dispatch to the CPU GEMM or cuBLAS. Forward only: the ops
// record their own nodes.
#include "core/tensor.h"
#include "cuda/matmul.h"

namespace mgl::detail {

// Runs a GEMM described on raw pointers (cuda/matmul.h) on `device`: the CPU GEMM (ops/detail/cpu_gemm.h)
// or cuBLAS on the device's compute stream. For ops that lay out their own operands and outputs.
void run_gemm(const cuda::Gemm& problem, const Device& device);

// out [batch..., m, n] = a [..., m, k] @ b [..., k, n] (+ bias [n] on every row), batch dims
// broadcast. Records no graph.
Tensor matmul_forward(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias = {});

// t with its last two dims swapped, as a plain view (no graph node): a GEMM operand.
Tensor transposed_view(const Tensor& t);

}  // namespace mgl::detail

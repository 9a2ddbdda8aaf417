#pragma once
// The tensor side of every GEMM (matmul, linear): input checks, broadcasting of batch dims,
// describing each operand to the GEMM without a copy when its layout allows (a transposed view is
// read as "stored transposed"), and the dispatch to the CPU GEMM, cuBLAS, or cuBLASLt where an epilogue takes
// linear's bias (cuda/gemm_bias.h). Forward only: the ops record their own nodes.
#include "core/tensor.h"
#include "cuda/matmul.h"

namespace mgl::detail {

// Runs a GEMM described on raw pointers (cuda/matmul.h) on `device`: the CPU GEMM (ops/detail/cpu_gemm.h)
// or cuBLAS on the device's compute stream. For ops that lay out their own operands and outputs.
void run_gemm(const cuda::Gemm& problem, const Device& device);

// out [batch..., m, n] = a [..., m, k] @ b [..., k, n] (+ bias [n] on every row), batch dims
// broadcast. Records no graph. With a bias on CUDA (f32, bf16, one product after the batch folding) the GEMM's
// cuBLASLt epilogue adds it (cuda/gemm_bias.h); elsewhere, and where cuBLASLt declines, the bias is broadcast
// into out and the GEMM accumulates onto it.
Tensor matmul_forward(const char* op, const Tensor& a, const Tensor& b, const Tensor& bias = {});

// product = a @ b for matrices a [m, k] and b [k, n], and, when asked and one GEMM can give them, row_sums [m] =
// a's rows summed (a @ 1) from that GEMM's cuBLASLt epilogue (cuda/gemm_bias.h): linear's dW = dY^T X with
// db = Σ_rows dY, a = dY^T. row_sums is left undefined where the GEMM could not give them (the CPU, f64, not
// asked, cuBLASLt declining): the caller sums. Records no graph.
struct ProductAndRowSums {
  Tensor product, row_sums;
};
ProductAndRowSums matmul_with_row_sums(const char* op, const Tensor& a, const Tensor& b, bool want_row_sums);

// t with its last two dims swapped, as a plain view (no graph node): a GEMM operand.
Tensor transposed_view(const Tensor& t);

}  // namespace mgl::detail

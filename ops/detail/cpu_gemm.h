#pragma once
// The CPU GEMM behind matmul and linear, on the raw problem description of cuda/matmul.h:
// C_i = op(A_i) op(B_i) (+ C_i) for every batch index i, row-major, operands possibly stored
// transposed.
//
// f32 and f64 go to OpenBLAS (cblas_sgemm / cblas_dgemm) when the engine is built with it
// (MGL_WITH_OPENBLAS), otherwise to gemm_blocked(); bf16 operands are widened to f32, multiplied
// as f32, and the result rounded back to bf16 (or kept in f32 for f32_output).
#include "cuda/matmul.h"

namespace mgl::detail {

void cpu_gemm(const cuda::Gemm& problem);

// The built-in cache-blocked kernel (f32 and f64), accumulating in the operands' type. It serves
// builds without OpenBLAS; it is declared here so that tests check it in every build.
void gemm_blocked(const cuda::Gemm& problem);

}  // namespace mgl::detail

#pragma once
// GEMMs whose epilogue takes care of a bias, through cuBLASLt: the CUDA side of linear's bias. ops/detail/gemm.cpp
// dispatches to them (run_gemm_bias, run_gemm_bias_grad) from matmul_forward and matmul_row_sums, which
// ops/linear.cpp calls. On the Gemm of cuda/matmul.h (row-major, op(A) [m, k], op(B) [k, n], C [m, n]):
//
//   gemm_bias:       C = op(A) op(B) + 1 b^T,       b [n] added to every row of C           (linear's forward)
//   gemm_bias_grad:  C = op(A) op(B),  s = op(A) 1, s [m] the row sums of op(A)             (linear's dW and db)
//
// Linear with X [N, in], W [out, in], dY [N, out]: the forward Y = X W^T + 1 b^T is gemm_bias with op(A) = X and
// op(B) = W^T; the backward's dW = dY^T X is gemm_bias_grad with op(A) = dY^T, whose row sums are
// s_i = Σ_r dY[r, i] = db_i. So the bias costs neither a broadcast write of Y before the GEMM (and the GEMM's read
// of it back, beta = 1) nor a separate column-sum pass over dY after the dW GEMM.
//
// In cuBLAS's column-major terms (cuda/matmul.cu: we ask for C^T = op(B)^T op(A)^T, so cuBLAS's A is our B, its B
// is our A, and its M × N output is our n × m), our bias over C's columns is a vector over cuBLAS's rows:
// CUBLASLT_EPILOGUE_BIAS ("bias vector length must match matrix D rows", broadcast over D's columns). Our row sums
// of op(A) are the sums over k of cuBLAS's B: CUBLASLT_EPILOGUE_BGRADB (length = D's columns = our m; the
// reduction runs over the GEMM's k). Bias and bias gradient have C's dtype (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
// "the same type as the elements of output matrix (Dtype)" for kernels other than IMMA and fp8), f32 or bf16; the
// products, the bias addition and the sums run in f32 (CUBLAS_COMPUTE_32F, no TF32), as gemm() does.
//
// Fallback. Either function returns false, having enqueued nothing, when it does not run the problem: f64 (kept on
// gemm()), an f32 output of bf16 operands, accumulation onto C, a batch of more than one product, the epilogues
// switched off (set_gemm_bias_epilogues(false), or MGL_GEMM_BIAS_EPILOGUES=0 in the environment), or cuBLASLt
// declining it: CUBLAS_STATUS_NOT_SUPPORTED from any call, or no heuristic result. The caller then runs the
// path these replace: the bias broadcast into C and gemm() accumulating onto it; gemm() and a column sum. The
// decision is kept per GEMM description (device, dtype, epilogue, transposes, m, n, k, leading dimensions and the
// alignment of every pointer), with the algorithm cuBLASLt's heuristic chose for it: cuBLASLt is asked once per
// description, and one it declined goes straight to the fallback ever after. Any other cuBLASLt status is an
// error and throws. The calls run on `stream` (the device's compute stream) with cuda/matmul.cu's workspace
// (with_gemm_workspace).
#include <cstdint>

#include "base/layout.h"
#include "cuda/matmul.h"

namespace mgl::cuda {

// C = op(A) op(B) + bias on every row; bias [n] is packed (stride 1) and has problem.dtype. `device` must be the
// current device; problem.m, n, k >= 1. False: nothing enqueued, run the fallback.
bool gemm_bias(const Gemm& problem, const void* bias, int device, Stream stream);

// C = op(A) op(B) and row_sums [m] = the sums of op(A)'s rows (over k), packed, of problem.dtype. Same
// conditions and answer as gemm_bias.
bool gemm_bias_grad(const Gemm& problem, void* row_sums, int device, Stream stream);

// Whether the two functions above try cuBLASLt at all. On by default; MGL_GEMM_BIAS_EPILOGUES=0 in the environment
// (read at the first call) turns it off, for A/B timings and to rule the epilogues out when debugging. Tests
// switch it (tests/ops/test_linear_cuda.cpp) to compare the fallback with the epilogues in one process.
void set_gemm_bias_epilogues(bool enabled);
bool gemm_bias_epilogues_enabled();

// What the two functions did since the process started: GEMMs run with the bias epilogue, with the bias-gradient
// epilogue, and calls answered false (the fallback ran). Tests read them to know which path they checked.
struct GemmBiasCounts {
  int64_t bias = 0, bias_grad = 0, declined = 0;
};
GemmBiasCounts gemm_bias_counts();

}  // namespace mgl::cuda

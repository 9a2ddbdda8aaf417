#pragma once
// A (strided-batched) GEMM described on raw pointers, in row-major terms:
//
//   for every batch index i:   C_i = op(A_i) @ op(B_i)   (+ C_i when accumulate)
//
// with op(A) an [m, k] matrix, op(B) a [k, n] matrix and C an [m, n] matrix. Each operand is stored
// row-major with a leading dimension (its row stride, in elements); a `transposed` operand is stored
// as its transpose (op(A) = A^T, A stored [k, m]), which is how a transposed view reaches the GEMM
// without a copy. A batch stride of 0 shares one matrix across the whole batch.
//
// Plain C++: ops/ builds a Gemm from tensors, and the same description drives the CPU GEMM
// (ops/detail/cpu_gemm.h) and the cuBLAS call below.
#include <cstddef>
#include <cstdint>
#include <functional>

#include "base/layout.h"

namespace mgl::cuda {

struct GemmOperand {
  const void* data = nullptr;
  int64_t ld = 1;            // leading dimension of the stored matrix (>= its column count, >= 1)
  int64_t batch_stride = 0;  // elements between consecutive matrices of the batch
  bool transposed = false;   // stored as the transpose of the operand
};

struct Gemm {
  DType dtype = DType::f32;  // of A and B, and of C unless f32_output
  int64_t batch = 1, m = 0, n = 0, k = 0;
  GemmOperand a, b;
  void* c = nullptr;
  int64_t ldc = 1;
  int64_t c_batch_stride = 0;
  bool accumulate = false;  // C += op(A) op(B) instead of C = op(A) op(B)
  bool f32_output = false;  // C is f32 whatever A and B are (bf16 products not rounded: attention logits)
};

// cuBLAS (cublasGemmStridedBatchedEx) on the device's compute stream, accumulating in f32 for f32
// and bf16 (no TF32), f64 for f64 (which takes no f32_output). `device` must be the current device.
// An empty problem (batch, m or n zero) does nothing; k must be >= 1 (a product over nothing is the
// caller's zero fill).
void gemm(const Gemm& problem, int device, Stream stream);

// Runs `enqueue` with the device's cuBLAS workspace (the one gemm() gives its handle), for GEMMs through other
// cuBLAS entry points (cuBLASLt: cuda/gemm_bias.h) that enqueue on the same stream. It runs under the lock that
// serialises every GEMM's enqueue, so the workspace is never handed out twice at once; `device` must be the
// current device. Exceptions from `enqueue` pass through (the lock is released).
void with_gemm_workspace(int device, Stream stream, const std::function<void(void* workspace, size_t bytes)>& enqueue);

}  // namespace mgl::cuda

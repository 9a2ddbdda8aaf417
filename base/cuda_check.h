#pragma once
// Checks for CUDA runtime return codes, for .cu files and CUDA-only code paths (cuBLAS, NCCL and CUPTI have
// theirs next to their only callers, cuda/matmul.cu, cuda/comm.cu and cuda/kernel_activity.cu, MPI in
// dist/mpi_check.h; all five are MGL_CHECK_STATUS).
#include <cuda_runtime.h>

#include "base/error.h"

#define MGL_CUDA_CHECK(call) MGL_CHECK_STATUS(call, cudaSuccess, "CUDA", cudaGetErrorString(mgl_status_))

// After a kernel launch: reports bad launch configurations at the launch site.
#define MGL_CUDA_CHECK_LAUNCH() MGL_CUDA_CHECK(cudaGetLastError())

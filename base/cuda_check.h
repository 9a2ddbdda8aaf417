#pragma once
// Checks for CUDA runtime return codes, for .cu files and CUDA-only code paths (cuBLAS and NCCL have theirs
// next to their only callers, cuda/matmul.cu and cuda/comm.cu, MPI in dist/mpi_check.h; all four are
// MGL_CHECK_STATUS).
#include <cuda_runtime.h>

#include "base/error.h"

#define MGL_CUDA_CHECK(call) MGL_CHECK_STATUS(call, cudaSuccess, "CUDA", cudaGetErrorString(mgl_status_))

// After a kernel launch: reports bad launch configurations at the launch site.
#define MGL_CUDA_CHECK_LAUNCH() MGL_CUDA_CHECK(cudaGetLastError())

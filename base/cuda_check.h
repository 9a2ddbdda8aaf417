#pragma once
// Checks for CUDA runtime and cuBLAS return codes, for .cu files and CUDA-only code paths.
#include <cuda_runtime.h>

#include "base/error.h"

#define MGL_CUDA_CHECK(call)                                                                    \
  do {                                                                                          \
    cudaError_t mgl_status_ = (call);                                                           \
    MGL_CHECK(mgl_status_ == cudaSuccess, "CUDA error in ", #call, ": ",                       \
              cudaGetErrorString(mgl_status_));                                                 \
  } while (0)

// After a kernel launch: reports bad launch configurations at the launch site.
#define MGL_CUDA_CHECK_LAUNCH() MGL_CUDA_CHECK(cudaGetLastError())

// GEMM through cuBLAS.
//
// Layout: cuBLAS is column-major, our tensors are row-major. A row-major [m, n] matrix with leading
// dimension ld has the same bytes as a column-major [n, m] matrix with the same ld, i.e. its
// transpose. So instead of C = op(A) op(B) we ask cuBLAS for C^T = op(B)^T op(A)^T: the first cuBLAS
// operand is B, the second is A, and cuBLAS's (M, N) are our (n, m). A stored-transposed operand
// becomes CUBLAS_OP_T, a plain one CUBLAS_OP_N; leading dimensions carry over unchanged.
//
// Precision: f32 and bf16 inputs accumulate in f32 (CUBLAS_COMPUTE_32F, never the _FAST_TF32
// variants, and the handle's math mode forbids reduced-precision split-K reductions), f64 in f64.
//
// Handles: one per device, created on first use, bound to the device's compute stream and given its
// own workspace, so cuBLAS never allocates behind the stream-ordered pool's back (cuBLASLt's calls,
// cuda/gemm_bias.cu, borrow the same workspace: with_gemm_workspace). Handles and their workspaces live until
// the process exits (destroying them from static destructors would race the
// CUDA runtime's own teardown).
#include <cublas_v2.h>

#include <mutex>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/matmul.h"

#define MGL_CUBLAS_CHECK(call) \
  MGL_CHECK_STATUS(call, CUBLAS_STATUS_SUCCESS, "cuBLAS", cublasGetStatusString(mgl_status_))

namespace mgl::cuda {

namespace {

// cuBLAS's recommended workspace for Hopper.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct DeviceHandle {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  bool bound = false;
  Stream stream = nullptr;
};

// Creates h's handle on first use (on the current device) and binds it to `stream`. Called under
// the lock in gemm(): a cuBLAS handle must not be reconfigured while another thread uses it.
cublasHandle_t bind_handle(DeviceHandle& h, Stream stream) {
  if (!h.handle) {
    MGL_CUBLAS_CHECK(cublasCreate(&h.handle));
    MGL_CUBLAS_CHECK(cublasSetMathMode(
        h.handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    MGL_CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspaceBytes));
  }
  if (!h.bound || h.stream != stream) {
    // cublasSetStream resets the workspace to cuBLAS's default pool: set ours again after it.
    MGL_CUBLAS_CHECK(cublasSetStream(h.handle, stream));
    MGL_CUBLAS_CHECK(cublasSetWorkspace(h.handle, h.workspace, kWorkspaceBytes));
    h.bound = true;
    h.stream = stream;
  }
  return h.handle;
}

struct TypeInfo {
  cudaDataType_t data;
  cublasComputeType_t compute;
};
TypeInfo type_info(DType dtype) {
  switch (dtype) {
    case DType::f32: return {CUDA_R_32F, CUBLAS_COMPUTE_32F};
    case DType::bf16: return {CUDA_R_16BF, CUBLAS_COMPUTE_32F};
    case DType::f64: return {CUDA_R_64F, CUBLAS_COMPUTE_64F};
    default: MGL_FAIL("gemm: unsupported dtype ", dtype_name(dtype));
  }
}

// The handles of all devices and the lock that serialises their use (gemm(), with_gemm_workspace()).
struct Handles {
  std::mutex mutex;
  std::vector<DeviceHandle> devices;
};
Handles& handles() {
  static Handles h;
  return h;
}

// h's handle for `device`, created on first use and bound to `stream`; called under h.mutex.
DeviceHandle& device_handle(Handles& h, int device, Stream stream) {
  if (static_cast<int>(h.devices.size()) <= device) h.devices.resize(device + 1);
  bind_handle(h.devices[device], stream);
  return h.devices[device];
}

}  // namespace

void with_gemm_workspace(int device, Stream stream, const std::function<void(void* workspace, size_t bytes)>& enqueue) {
  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mutex);
  const DeviceHandle& d = device_handle(h, device, stream);
  enqueue(d.workspace, kWorkspaceBytes);
}

void gemm(const Gemm& p, int device, Stream stream) {
  MGL_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 1, "gemm: invalid problem batch ", p.batch, " m ", p.m,
            " n ", p.n, " k ", p.k);
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  const TypeInfo type = type_info(p.dtype);
  MGL_CHECK(!p.f32_output || p.dtype != DType::f64, "gemm: f64 operands take no f32 output");
  const cudaDataType_t c_type = p.f32_output ? CUDA_R_32F : type.data;
  // alpha and beta have the compute type: float for CUBLAS_COMPUTE_32F, double for 64F.
  const float alpha32 = 1.0f, beta32 = p.accumulate ? 1.0f : 0.0f;
  const double alpha64 = 1.0, beta64 = p.accumulate ? 1.0 : 0.0;
  const bool f64 = p.dtype == DType::f64;

  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mutex);
  cublasHandle_t handle = device_handle(h, device, stream).handle;

  MGL_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      handle, p.b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, p.a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, p.n, p.m, p.k,
      f64 ? static_cast<const void*>(&alpha64) : &alpha32, p.b.data, type.data, p.b.ld, p.b.batch_stride, p.a.data,
      type.data, p.a.ld, p.a.batch_stride, f64 ? static_cast<const void*>(&beta64) : &beta32, p.c, c_type, p.ldc,
      p.c_batch_stride, p.batch, type.compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace mgl::cuda

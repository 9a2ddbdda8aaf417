// GEMMs with cuBLASLt's bias epilogues (the math, the layout and the fallback: cuda/gemm_bias.h).
//
// One cuBLASLt handle per device, created on first use. Descriptors live on the stack (the *Init functions over
// the opaque structs: nothing to destroy, so every call's status is checked). Plans, the cached decisions with
// the chosen algorithm, are keyed by everything cuBLASLt's choice depends on; pointers enter only through their
// alignment, which the preference states (its default assumes 256-byte aligned buffers, which a view at an
// offset need not be) and which the bias pointer's value tells the heuristic. All of it runs under
// with_gemm_workspace()'s lock (cuda/matmul.cu), which also hands out the workspace.
//
// Precision as in gemm(): CUBLAS_COMPUTE_32F (no TF32); for bf16 outputs, split-K partial sums are reduced in
// the compute type only (the preference's reduction-scheme mask, the counterpart of the cuBLAS handle's
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION): no partial sums rounded to bf16.
#include <cublasLt.h>

#include <atomic>
#include <compare>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/gemm_bias.h"

#define MGL_CUBLASLT_CHECK(call) \
  MGL_CHECK_STATUS(call, CUBLAS_STATUS_SUCCESS, "cuBLASLt", cublasLtGetStatusString(mgl_status_))

namespace mgl::cuda {

namespace {

enum class Epilogue : uint8_t { bias, bias_grad };

// Everything the heuristic's answer depends on.
struct PlanKey {
  int device = 0;
  DType dtype = DType::f32;
  Epilogue epilogue = Epilogue::bias;
  bool a_transposed = false, b_transposed = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  uint32_t align_a = 0, align_b = 0, align_c = 0, align_vector = 0;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  bool supported = false;
  cublasLtMatmulAlgo_t algo{};
};

// Used under with_gemm_workspace()'s lock only.
struct State {
  std::vector<cublasLtHandle_t> handles;  // per device; live until the process exits, as cuBLAS's (matmul.cu)
  std::map<PlanKey, Plan> plans;
};
State& state() {
  static State s;
  return s;
}

std::atomic<int64_t> bias_runs{0}, bias_grad_runs{0}, declined_calls{0};
std::atomic<int> enabled_flag{-1};  // -1: the environment not read yet

// The largest power of two up to 256 that divides the address: the alignment the heuristic may assume.
uint32_t alignment(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// A cuBLASLt status: true on success, false when cuBLASLt declines the problem (the caller falls back); any other
// status is an error (a wrong argument, a failed launch) and throws.
bool accepted(cublasStatus_t status, const char* call, int attribute = -1) {
  if (status == CUBLAS_STATUS_SUCCESS) return true;
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  MGL_FAIL("cuBLASLt error in ", call, attribute >= 0 ? " (attribute " + std::to_string(attribute) + ")" : "",
           ": ", cublasLtGetStatusString(status));
}

bool set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const void* value, size_t size) {
  return accepted(cublasLtMatmulDescSetAttribute(desc, attribute, value, size), "cublasLtMatmulDescSetAttribute",
                  attribute);
}
bool set(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute, const void* value,
         size_t size) {
  return accepted(cublasLtMatmulPreferenceSetAttribute(pref, attribute, value, size),
                  "cublasLtMatmulPreferenceSetAttribute", attribute);
}

cublasLtHandle_t device_handle(State& s, int device) {
  if (static_cast<int>(s.handles.size()) <= device) s.handles.resize(device + 1, nullptr);
  if (!s.handles[device]) MGL_CUBLASLT_CHECK(cublasLtCreate(&s.handles[device]));
  return s.handles[device];
}

// Describes p with its epilogue and enqueues it, choosing the algorithm first when `plan` has none. False when
// cuBLASLt declines (nothing enqueued).
bool enqueue(const Gemm& p, Epilogue epilogue, void* vector, int device, Stream stream, void* workspace,
             size_t workspace_bytes, Plan* plan, bool have_algo) {
  State& s = state();
  const cublasLtHandle_t handle = device_handle(s, device);
  const cudaDataType_t type = p.dtype == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;

  // cuBLAS's A is our B and its B is our A (the top of cuda/gemm_bias.h); a stored-transposed operand is OP_T.
  cublasLtMatmulDescOpaque_t desc_storage;
  const cublasLtMatmulDesc_t desc = &desc_storage;
  MGL_CUBLASLT_CHECK(cublasLtMatmulDescInit(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t trans_a = p.b.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int32_t trans_b = p.a.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const uint32_t epilogue_value = epilogue == Epilogue::bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
  const int32_t vector_type = type;
  if (!set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)) ||
      !set(desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)) ||
      !set(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue_value, sizeof(epilogue_value)) ||
      !set(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vector, sizeof(vector)) ||
      !set(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &vector_type, sizeof(vector_type))) {
    return false;
  }

  // Column-major layouts of the stored matrices: cuBLAS's A is op-free [n, k] (our B [k, n] row-major) or, stored
  // transposed, [k, n]; its B [k, m] or [m, k]; D [n, m]. Leading dimensions carry over.
  cublasLtMatrixLayoutOpaque_t a_storage, b_storage, d_storage;
  const cublasLtMatrixLayout_t a_layout = &a_storage, b_layout = &b_storage, d_layout = &d_storage;
  MGL_CUBLASLT_CHECK(cublasLtMatrixLayoutInit(a_layout, type, p.b.transposed ? p.k : p.n, p.b.transposed ? p.n : p.k,
                                              p.b.ld));
  MGL_CUBLASLT_CHECK(cublasLtMatrixLayoutInit(b_layout, type, p.a.transposed ? p.m : p.k, p.a.transposed ? p.k : p.m,
                                              p.a.ld));
  MGL_CUBLASLT_CHECK(cublasLtMatrixLayoutInit(d_layout, type, p.n, p.m, p.ldc));

  if (!have_algo) {
    cublasLtMatmulPreferenceOpaque_t pref_storage;
    const cublasLtMatmulPreference_t pref = &pref_storage;
    MGL_CUBLASLT_CHECK(cublasLtMatmulPreferenceInit(pref));
    const uint64_t max_workspace = workspace_bytes;
    const uint32_t reduction_mask = p.dtype == DType::bf16 ? CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
                                                           : CUBLASLT_REDUCTION_SCHEME_MASK;
    const uint32_t align_a = alignment(p.b.data), align_b = alignment(p.a.data), align_c = alignment(p.c);
    if (!set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof(max_workspace)) ||
        !set(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reduction_mask, sizeof(reduction_mask)) ||
        !set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)) ||
        !set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)) ||
        !set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)) ||
        !set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c))) {
      return false;
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    if (!accepted(cublasLtMatmulAlgoGetHeuristic(handle, desc, a_layout, b_layout, d_layout, d_layout, pref, 1,
                                                 &result, &found),
                  "cublasLtMatmulAlgoGetHeuristic") ||
        found < 1 || result.state != CUBLAS_STATUS_SUCCESS || result.workspaceSize > workspace_bytes) {
      return false;
    }
    plan->algo = result.algo;
  }

  const float alpha = 1.0f, beta = 0.0f;  // the scale type of CUBLAS_COMPUTE_32F; C (= D) is not read
  return accepted(cublasLtMatmul(handle, desc, &alpha, p.b.data, a_layout, p.a.data, b_layout, &beta, p.c, d_layout,
                                 p.c, d_layout, &plan->algo, workspace, workspace_bytes, stream),
                  "cublasLtMatmul");
}

bool run(const Gemm& p, Epilogue epilogue, void* vector, int device, Stream stream) {
  if (!gemm_bias_epilogues_enabled() || (p.dtype != DType::f32 && p.dtype != DType::bf16) || p.f32_output ||
      p.accumulate || p.batch != 1 || vector == nullptr) {
    ++declined_calls;
    return false;
  }
  MGL_CHECK(p.m >= 1 && p.n >= 1 && p.k >= 1, "gemm_bias: expected a non-empty problem, got m ", p.m, " n ", p.n,
            " k ", p.k);
  PlanKey key;
  key.device = device;
  key.dtype = p.dtype;
  key.epilogue = epilogue;
  key.a_transposed = p.a.transposed;
  key.b_transposed = p.b.transposed;
  key.m = p.m;
  key.n = p.n;
  key.k = p.k;
  key.lda = p.a.ld;
  key.ldb = p.b.ld;
  key.ldc = p.ldc;
  key.align_a = alignment(p.a.data);
  key.align_b = alignment(p.b.data);
  key.align_c = alignment(p.c);
  key.align_vector = alignment(vector);

  bool ran = false;
  with_gemm_workspace(device, stream, [&](void* workspace, size_t workspace_bytes) {
    std::map<PlanKey, Plan>& plans = state().plans;
    const auto found = plans.find(key);
    if (found != plans.end() && !found->second.supported) return;  // declined before: straight to the fallback
    Plan plan = found != plans.end() ? found->second : Plan{};
    ran = enqueue(p, epilogue, vector, device, stream, workspace, workspace_bytes, &plan, found != plans.end());
    plan.supported = ran;
    plans[key] = plan;  // a decline is remembered as well as a success
  });
  if (!ran) ++declined_calls;
  else if (epilogue == Epilogue::bias) ++bias_runs;
  else ++bias_grad_runs;
  return ran;
}

}  // namespace

bool gemm_bias(const Gemm& problem, const void* bias, int device, Stream stream) {
  return run(problem, Epilogue::bias, const_cast<void*>(bias), device, stream);
}

bool gemm_bias_grad(const Gemm& problem, void* row_sums, int device, Stream stream) {
  return run(problem, Epilogue::bias_grad, row_sums, device, stream);
}

void set_gemm_bias_epilogues(bool enabled) { enabled_flag = enabled ? 1 : 0; }

bool gemm_bias_epilogues_enabled() {
  int flag = enabled_flag.load();
  if (flag < 0) {
    const char* value = std::getenv("MGL_GEMM_BIAS_EPILOGUES");
    const int from_environment = value && std::strcmp(value, "0") == 0 ? 0 : 1;
    enabled_flag.compare_exchange_strong(flag, from_environment);  // a set_gemm_bias_epilogues() first wins
    flag = enabled_flag.load();
  }
  return flag == 1;
}

GemmBiasCounts gemm_bias_counts() { return {bias_runs.load(), bias_grad_runs.load(), declined_calls.load()}; }

}  // namespace mgl::cuda

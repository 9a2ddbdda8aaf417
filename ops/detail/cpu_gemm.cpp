#include "ops/detail/cpu_gemm.h"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "base/error.h"

#ifdef MGL_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace mgl::detail {

namespace {

using cuda::Gemm;
using cuda::GemmOperand;

// Element (row, col) of op(X) for batch index `batch`.
template <class T>
T element(const GemmOperand& x, int64_t batch, int64_t row, int64_t col) {
  const T* base = static_cast<const T*>(x.data) + batch * x.batch_stride;
  return x.transposed ? base[col * x.ld + row] : base[row * x.ld + col];
}

// Goto-style blocking, simplified: for each [kKc, kNc] panel of op(B) (packed once, ~512 KiB in
// f32, sized for L2) and each [kMc, kKc] block of op(A) (packed, ~64 KiB, for L1/L2), every C row
// of the block is updated by rank-1 steps whose inner loop over j is contiguous in both the packed
// panel and C, so the compiler vectorises it. Packing also turns every operand layout (plain or
// transposed, any leading dimension) into the same contiguous form.
template <class T>
void blocked(const Gemm& p) {
  constexpr int64_t kMc = 64, kKc = 256, kNc = 512;
  std::vector<T> a_pack(kMc * kKc), b_pack(kKc * kNc);
  for (int64_t batch = 0; batch < p.batch; ++batch) {
    T* c = static_cast<T*>(p.c) + batch * p.c_batch_stride;
    if (!p.accumulate)
      for (int64_t i = 0; i < p.m; ++i) std::fill(c + i * p.ldc, c + i * p.ldc + p.n, T(0));
    for (int64_t jc = 0; jc < p.n; jc += kNc) {
      const int64_t nc = std::min(kNc, p.n - jc);
      for (int64_t pc = 0; pc < p.k; pc += kKc) {
        const int64_t kc = std::min(kKc, p.k - pc);
        for (int64_t q = 0; q < kc; ++q)
          for (int64_t j = 0; j < nc; ++j) b_pack[q * nc + j] = element<T>(p.b, batch, pc + q, jc + j);
        for (int64_t ic = 0; ic < p.m; ic += kMc) {
          const int64_t mc = std::min(kMc, p.m - ic);
          for (int64_t i = 0; i < mc; ++i)
            for (int64_t q = 0; q < kc; ++q) a_pack[i * kc + q] = element<T>(p.a, batch, ic + i, pc + q);
          for (int64_t i = 0; i < mc; ++i) {
            T* c_row = c + (ic + i) * p.ldc + jc;
            for (int64_t q = 0; q < kc; ++q) {
              const T a = a_pack[i * kc + q];
              const T* b_row = b_pack.data() + q * nc;
              for (int64_t j = 0; j < nc; ++j) c_row[j] += a * b_row[j];
            }
          }
        }
      }
    }
  }
}

#ifdef MGL_WITH_OPENBLAS
// One cblas_?gemm call per batch matrix; OpenBLAS threads each call itself.
template <class T>
void blas(const Gemm& p) {
  for (int64_t v : {p.m, p.n, p.k, p.a.ld, p.b.ld, p.ldc})
    MGL_CHECK(v <= std::numeric_limits<blasint>::max(), "gemm: dimension ", v, " exceeds OpenBLAS's integer range");
  const auto trans = [](const GemmOperand& x) { return x.transposed ? CblasTrans : CblasNoTrans; };
  const T beta = p.accumulate ? T(1) : T(0);
  for (int64_t batch = 0; batch < p.batch; ++batch) {
    const T* a = static_cast<const T*>(p.a.data) + batch * p.a.batch_stride;
    const T* b = static_cast<const T*>(p.b.data) + batch * p.b.batch_stride;
    T* c = static_cast<T*>(p.c) + batch * p.c_batch_stride;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, trans(p.a), trans(p.b), p.m, p.n, p.k, 1.0f, a, p.a.ld, b, p.b.ld, beta, c, p.ldc);
    else
      cblas_dgemm(CblasRowMajor, trans(p.a), trans(p.b), p.m, p.n, p.k, 1.0, a, p.a.ld, b, p.b.ld, beta, c, p.ldc);
  }
}
#endif

template <class T>
void native(const Gemm& p) {
#ifdef MGL_WITH_OPENBLAS
  blas<T>(p);
#else
  blocked<T>(p);
#endif
}

// op(X) of every distinct matrix of the batch (one when the operand is shared), widened to f32 and
// packed as a plain contiguous operand.
std::vector<float> widen(const GemmOperand& x, int64_t batch, int64_t rows, int64_t cols, GemmOperand& packed) {
  const int64_t count = x.batch_stride == 0 ? 1 : batch;
  std::vector<float> out(static_cast<size_t>(count * rows * cols));
  for (int64_t i = 0; i < count; ++i)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) out[(i * rows + r) * cols + c] = float(element<bf16>(x, i, r, c));
  packed = {out.data(), std::max<int64_t>(cols, 1), count == 1 ? 0 : rows * cols, false};
  return out;
}

// bf16: widen A and B (and C when accumulating) to f32, multiply in f32, round C back; an f32 C
// (f32_output) takes the product as it is.
void bf16_through_f32(const Gemm& p) {
  Gemm wide = p;
  wide.dtype = DType::f32;
  wide.f32_output = false;
  const std::vector<float> a = widen(p.a, p.batch, p.m, p.k, wide.a);
  const std::vector<float> b = widen(p.b, p.batch, p.k, p.n, wide.b);
  if (p.f32_output) return native<float>(wide);
  std::vector<float> c(static_cast<size_t>(p.batch * p.m * p.n));
  wide.c = c.data();
  wide.ldc = p.n;
  wide.c_batch_stride = p.m * p.n;
  auto for_each_c = [&](auto&& f) {
    for (int64_t i = 0; i < p.batch; ++i)
      for (int64_t r = 0; r < p.m; ++r)
        for (int64_t col = 0; col < p.n; ++col)
          f(static_cast<bf16*>(p.c)[i * p.c_batch_stride + r * p.ldc + col], c[(i * p.m + r) * p.n + col]);
  };
  if (p.accumulate) for_each_c([](bf16 stored, float& wide_value) { wide_value = float(stored); });
  native<float>(wide);
  for_each_c([](bf16& stored, float wide_value) { stored = bf16(wide_value); });
}

}  // namespace

void cpu_gemm(const Gemm& p) {
  MGL_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 1, "gemm: invalid problem batch ", p.batch, " m ", p.m,
            " n ", p.n, " k ", p.k);
  MGL_CHECK(!p.f32_output || p.dtype != DType::f64, "gemm: f64 operands take no f32 output");
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  switch (p.dtype) {
    case DType::f32: return native<float>(p);
    case DType::f64: return native<double>(p);
    case DType::bf16: return bf16_through_f32(p);
    default: MGL_FAIL("gemm: unsupported dtype ", dtype_name(p.dtype));
  }
}

void gemm_blocked(const Gemm& p) {
  MGL_CHECK(p.k >= 1, "gemm_blocked: k must be >= 1, got ", p.k);
  switch (p.dtype) {
    case DType::f32: return blocked<float>(p);
    case DType::f64: return blocked<double>(p);
    default: MGL_FAIL("gemm_blocked: expected f32 or f64, got ", dtype_name(p.dtype));
  }
}

}  // namespace mgl::detail

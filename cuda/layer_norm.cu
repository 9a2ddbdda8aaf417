// LayerNorm / RMSNorm kernels (see layer_norm.h for the math).
//
// Forward and the input gradient: one block per row (grid-stride over rows), whole warps, about
// four or more elements per thread. Row sums are warp-shuffle butterflies plus one shared-memory
// round (block_sum). The row is read two or three times; its second and third reads hit L1/L2.
// Statistics and all arithmetic are in M = f32 (f64 for f64 tensors).
//
// Weight and bias gradients are column sums over rows. A 2-D grid of [8 x 32]-thread blocks tiles
// the columns (32 per block, so each warp reads 32 consecutive elements of a row) and splits the
// rows into row_blocks() slices; each block writes one partial sum per column, and a second kernel
// adds the row_blocks() partials of every column. Deterministic, no atomics.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/layer_norm.h"

namespace mgl::cuda {

namespace {

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }

// Sums each of v[0..N) over the block; every thread receives the totals. Every warp reduces the
// per-warp partials itself (a butterfly gives all lanes the sum), so no broadcast round is needed,
// and all threads see bit-identical totals. blockDim.x must be a multiple of 32.
template <class M, int N>
__device__ void block_sum(M (&v)[N]) {
  __shared__ M partial[N][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int i = 0; i < N; ++i) {
    for (int offset = 16; offset > 0; offset /= 2) v[i] += __shfl_xor_sync(0xffffffffu, v[i], offset);
    if (lane == 0) partial[i][warp] = v[i];
  }
  __syncthreads();
  for (int i = 0; i < N; ++i) {
    v[i] = lane < warps ? partial[i][lane] : M(0);
    for (int offset = 16; offset > 0; offset /= 2) v[i] += __shfl_xor_sync(0xffffffffu, v[i], offset);
  }
  __syncthreads();  // `partial` is reused by the next call
}

template <class T, class M>
__global__ void forward_kernel(const T* x, const T* weight, const T* bias, T* y, M* mean, M* rstd, int64_t rows,
                               int64_t cols, M eps, bool center) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    M mu = 0;
    if (center) {
      M s[1] = {0};
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s[0] += load(xr + c);
      block_sum(s);
      mu = s[0] / cols;
    }
    // Variance about mu from a second pass over the row: no E[x^2] - mu^2 cancellation.
    M q[1] = {0};
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const M d = load(xr + c) - mu;
      q[0] += d * d;
    }
    block_sum(q);
    const M r = rsqrt(q[0] / cols + eps);
    T* yr = y + row * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      M v = (load(xr + c) - mu) * r;
      if (weight) v *= load(weight + c);
      if (bias) v += load(bias + c);
      store(yr + c, v);
    }
    if (threadIdx.x == 0) {
      mean[row] = mu;
      rstd[row] = r;
    }
  }
}

template <class T, class M>
__global__ void backward_input_kernel(const T* x, const T* weight, const M* mean, const M* rstd, const T* dy, T* dx,
                                      int64_t rows, int64_t cols, bool center) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    const T* dyr = dy + row * cols;
    const M mu = mean[row], r = rstd[row];
    auto xhat_at = [&](int64_t c) { return (load(xr + c) - mu) * r; };
    auto g_at = [&](int64_t c) { return weight ? load(dyr + c) * load(weight + c) : M(load(dyr + c)); };
    M s[2] = {0, 0};  // sum g, sum g * xhat
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const M g = g_at(c);
      s[0] += g;
      s[1] += g * xhat_at(c);
    }
    block_sum(s);
    const M mean_g = center ? s[0] / cols : M(0), mean_g_xhat = s[1] / cols;
    T* dxr = dx + row * cols;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) store(dxr + c, r * (g_at(c) - mean_g - xhat_at(c) * mean_g_xhat));
  }
}

constexpr int kTileCols = 32, kTileRows = 8;

// Launch: grid (ceil(cols / 32), row_blocks), block (32, 8). Block (bx, by) sums rows by*8 + ty,
// stepping by row_blocks * 8, for column bx*32 + tx; partial_*[by * cols + column] gets the block's sum.
template <class T, class M>
__global__ void param_partials_kernel(const T* x, const M* mean, const M* rstd, const T* dy, M* partial_w,
                                      M* partial_b, int64_t rows, int64_t cols) {
  __shared__ M tile_w[kTileRows][kTileCols], tile_b[kTileRows][kTileCols];
  const int64_t c = blockIdx.x * int64_t(kTileCols) + threadIdx.x;
  M sw = 0, sb = 0;
  if (c < cols)
    for (int64_t r = blockIdx.y * int64_t(kTileRows) + threadIdx.y; r < rows; r += int64_t(gridDim.y) * kTileRows) {
      const M g = load(dy + r * cols + c);
      sw += g * (load(x + r * cols + c) - mean[r]) * rstd[r];
      sb += g;
    }
  tile_w[threadIdx.y][threadIdx.x] = sw;
  tile_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int i = 1; i < kTileRows; ++i) {
      sw += tile_w[i][threadIdx.x];
      sb += tile_b[i][threadIdx.x];
    }
    partial_w[blockIdx.y * cols + c] = sw;
    partial_b[blockIdx.y * cols + c] = sb;
  }
}

// out[c] = sum over p of partial[p * cols + c]; one thread per column.
template <class T, class M>
__global__ void sum_partials_kernel(const M* partial, int64_t parts, int64_t cols, T* out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    M s = 0;
    for (int64_t p = 0; p < parts; ++p) s += partial[p * cols + c];
    store(out + c, s);
  }
}

// Threads per row: whole warps, about four elements each, 32 to 512.
int row_threads(int64_t cols) {
  const int64_t warps = ((cols + 3) / 4 + 31) / 32;
  return static_cast<int>(std::clamp<int64_t>(warps * 32, 32, 512));
}
unsigned row_blocks_for(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535LL * 16)); }

// Row slices of the parameter-gradient reduction: at least 64 rows each, at most 128 slices.
int64_t row_blocks(int64_t rows) { return std::clamp<int64_t>((rows + 63) / 64, 1, 128); }

// Calls f(T{}, M{}) with the device storage type T of `dtype` and its statistics type M.
template <class F>
void dispatch_norm_types(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(float{}, float{});
    case DType::bf16: return f(__nv_bfloat16{}, float{});
    case DType::f64: return f(double{}, double{});
    default: MGL_FAIL("norm kernels: unsupported dtype ", dtype_name(dtype));
  }
}

}  // namespace

void norm_forward(const NormForwardArgs& a, Stream stream) {
  if (a.rows == 0) return;
  dispatch_norm_types(a.dtype, [&](auto t_tag, auto m_tag) {
    using T = decltype(t_tag);
    using M = decltype(m_tag);
    forward_kernel<T, M><<<row_blocks_for(a.rows), row_threads(a.cols), 0, stream>>>(
        static_cast<const T*>(a.x), static_cast<const T*>(a.weight), static_cast<const T*>(a.bias),
        static_cast<T*>(a.y), static_cast<M*>(a.mean), static_cast<M*>(a.rstd), a.rows, a.cols,
        static_cast<M>(a.eps), a.center);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

int64_t norm_backward_workspace(int64_t rows, int64_t cols) { return 2 * row_blocks(rows) * cols; }

void norm_backward(const NormBackwardArgs& a, Stream stream) {
  const int64_t rows = a.rows, cols = a.cols;
  void *dx = a.dx, *dweight = a.dweight, *dbias = a.dbias;
  dispatch_norm_types(a.dtype, [&](auto t_tag, auto m_tag) {
    using T = decltype(t_tag);
    using M = decltype(m_tag);
    const T* xt = static_cast<const T*>(a.x);
    const T* dyt = static_cast<const T*>(a.dy);
    const M* mean_m = static_cast<const M*>(a.mean);
    const M* rstd_m = static_cast<const M*>(a.rstd);
    if (dx && rows > 0) {
      backward_input_kernel<T, M><<<row_blocks_for(rows), row_threads(cols), 0, stream>>>(
          xt, static_cast<const T*>(a.weight), mean_m, rstd_m, dyt, static_cast<T*>(dx), rows, cols, a.center);
      MGL_CUDA_CHECK_LAUNCH();
    }
    if (!dweight && !dbias) return;
    const int64_t parts = row_blocks(rows);
    M* partial_w = static_cast<M*>(a.workspace);
    M* partial_b = partial_w + parts * cols;
    const dim3 grid(static_cast<unsigned>((cols + kTileCols - 1) / kTileCols), static_cast<unsigned>(parts));
    param_partials_kernel<T, M><<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(xt, mean_m, rstd_m, dyt, partial_w,
                                                                                  partial_b, rows, cols);
    MGL_CUDA_CHECK_LAUNCH();
    if (dweight) {
      sum_partials_kernel<T, M><<<blocks_for(cols), kThreads, 0, stream>>>(partial_w, parts, cols, static_cast<T*>(dweight));
      MGL_CUDA_CHECK_LAUNCH();
    }
    if (dbias) {
      sum_partials_kernel<T, M><<<blocks_for(cols), kThreads, 0, stream>>>(partial_b, parts, cols, static_cast<T*>(dbias));
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace mgl::cuda

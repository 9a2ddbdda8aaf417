// Chunk-wise causal attention, FlashAttention-style (Dao et al. 2022; Dao 2023): the c x c
// probability matrix of a block never reaches global memory. Kernels work on 64 x 64 tiles of
// (query rows) x (key rows) with 256 threads: thread (ty, tx) = (tid / 16, tid % 16) owns the 4 x 4
// micro-tile of rows ty + 16a and columns tx + 16b (a, b < 4), so the 16 threads of a row are 16
// adjacent lanes of one warp and row reductions are 4 warp shuffles. Operands are staged in shared
// memory in f32 and every product is an f32 FMA (bf16 is storage only).
//
// Forward (one block per (query tile, slice of kCols value columns, attention block)): loop over the
// key tiles up to the diagonal; S = scale Q Kᵀ (reduction over dz in slabs of 16); online softmax
// with a running row max m and row sum l (the accumulator is rescaled by e^{m_old - m_new} whenever
// the max grows); O_slice += P̃ V_slice. At the end O = acc / l and logsumexp = m + log l.
// Splitting dv = 2048 into slices recomputes Q Kᵀ once per slice: with dz = 256 and kCols = 128 the
// S product costs twice the P V product of the slice, which is the price of keeping the accumulator
// (64 x kCols f32) in registers; a whole-dv accumulator would not fit.
//
// Backward (P recomputed from Q, K and the saved logsumexp; D_i = rowsum(dO_i ⊙ O_i)):
//   value_grad: one block per (key tile, value slice): loop over the query tiles that see it,
//               P̃ᵀ (64 keys x 64 queries) then dV_slice += P̃ᵀ dO_slice.
//   qk_grad:    one block per (row tile, role): role 0 owns a query tile and loops over key tiles
//               (dQ += dS K), role 1 owns a key tile and loops over query tiles (dK += dSᵀ Q). Each
//               recomputes S (over dz) and dP = dO Vᵀ (over dv) for its tile pairs; writing dQ and dK
//               from different blocks avoids atomics at the cost of computing dP twice.
#include <cfloat>

#include "cuda/chunk_attention.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

constexpr int kTile = 64;           // rows of a query or key tile
constexpr int kSlab = 16;           // slab of the reduction dimension staged per step
constexpr int kBlockThreads = 256;  // 16 x 16 threads, 4 x 4 micro-tiles
constexpr int kMaxHeadDim = 256;    // q/k head dims supported by qk_grad's register accumulator

// Up to 64 consecutive rows of a row-major matrix whose rows are `stride` elements apart; rows at
// or past `count` read as zeros.
template <class T>
struct Rows {
  const T* base = nullptr;  // row 0 of the tile
  int64_t stride = 0;
  int count = 0;
};

template <class T>
__device__ __forceinline__ Rows<T> rows_at(const T* data, int64_t first_row, int64_t row_stride, int64_t total_rows,
                                           int64_t tile_start) {
  const int64_t left = total_rows - tile_start;
  return {data + (first_row + tile_start) * row_stride, row_stride, static_cast<int>(left < kTile ? left : kTile)};
}

struct Shared {
  float a[kSlab][kTile + 1];  // slab of the row operand, transposed ([e][row]); +1 spreads the stores over banks
  float b[kSlab][kTile + 1];  // slab of the column operand
  float w[kTile][kTile];      // a tile of P̃ or dS, the left factor of an accumulate()
};

// s[a][b] += Σ_{e < len} A[ty + 16a][e] · B[tx + 16b][e]: a 64 x 64 tile of A Bᵀ.
template <class T>
__device__ void tile_product(const Rows<T>& A, const Rows<T>& B, int64_t len, float (&s)[4][4], Shared& sh) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  for (int64_t e0 = 0; e0 < len; e0 += kSlab) {
    // Stage 64 rows x 16 columns of each operand; consecutive threads read consecutive columns.
    for (int n = tid; n < kTile * kSlab; n += kBlockThreads) {
      const int row = n / kSlab, e = n % kSlab;
      const bool inside = e0 + e < len;
      sh.a[e][row] = (inside && row < A.count) ? to_float(A.base[row * A.stride + e0 + e]) : 0.0f;
      sh.b[e][row] = (inside && row < B.count) ? to_float(B.base[row * B.stride + e0 + e]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < kSlab; ++e) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = sh.a[e][ty + 16 * i];
        bv[i] = sh.b[e][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(av[i], bv[j], s[i][j]);
    }
    __syncthreads();
  }
}

// acc[a][b] += Σ_{j < 64} W[ty + 16a][j] · X[j][col0 + tx + 16b]   (W = sh.w; columns >= cols read as 0).
// X is staged 16 rows at a time in `xs` (kSlab x kCols floats of shared memory).
template <int kCols, class T>
__device__ void accumulate(const Rows<T>& X, int64_t col0, int64_t cols, float (&acc)[4][kCols / 16], Shared& sh,
                           float (*xs)[kCols]) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  for (int j0 = 0; j0 < kTile; j0 += kSlab) {
    for (int n = tid; n < kSlab * kCols; n += kBlockThreads) {
      const int j = n / kCols, c = n % kCols;
      xs[j][c] = (j0 + j < X.count && col0 + c < cols) ? to_float(X.base[(j0 + j) * X.stride + col0 + c]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kSlab; ++j) {
      float wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) wv[i] = sh.w[ty + 16 * i][j0 + j];
#pragma unroll
      for (int b = 0; b < kCols / 16; ++b) {
        const float x = xs[j][tx + 16 * b];
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i][b] = fmaf(wv[i], x, acc[i][b]);
      }
    }
    __syncthreads();
  }
}

// Reductions over the 16 lanes that share a row (lanes differ in bits 0..3).
__device__ __forceinline__ float row_max(float x) {
  for (int offset = 8; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
__device__ __forceinline__ float row_sum(float x) {
  for (int offset = 8; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__host__ __device__ inline int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }

// ---- forward ---------------------------------------------------------------------------------------

// Launch: grid (query tiles, value slices, blocks), kBlockThreads threads. Query tiles run in reverse
// order so that the longest (last) tiles of the causal triangle start first.
template <class T, int kCols>
__global__ void __launch_bounds__(kBlockThreads) forward_kernel(const T* q, const T* k, const T* v, T* o,
                                                                float* logsumexp, AttentionShape s) {
  __shared__ Shared sh;
  __shared__ float xs[kSlab][kCols];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t block = blockIdx.z;
  const int64_t q0 = (gridDim.x - 1 - blockIdx.x) * int64_t(kTile);
  const int64_t col0 = blockIdx.y * int64_t(kCols);
  const int64_t first_query = query_row(s, block, 0), first_key = key_row(s, block, 0);
  const Rows<T> Q = rows_at(q, first_query, s.heads * s.dz, s.q_len, q0);
  const int64_t last_row = min(q0 + kTile, s.q_len) - 1;
  const int64_t last_key = last_row + (s.k_len - s.q_len);  // the last key any row of the tile sees

  float m[4], l[4], acc[4][kCols / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int b = 0; b < kCols / 16; ++b) acc[i][b] = 0.0f;
  }

  for (int64_t k0 = 0; k0 <= last_key; k0 += kTile) {
    float sc[4][4] = {};
    tile_product(Q, rows_at(k, first_key, s.heads * s.dz, s.k_len, k0), s.dz, sc, sh);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t qi = q0 + ty + 16 * i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sc[i][j] = attends(s, qi, k0 + tx + 16 * j) ? sc[i][j] * static_cast<float>(s.scale) : -INFINITY;
        tile_max = fmaxf(tile_max, sc[i][j]);
      }
      const float m_new = fmaxf(m[i], row_max(tile_max));
      // Rows that have seen no key yet (m_new = -inf) use 0 as reference: their p and alpha are 0.
      const float reference = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = expf(m[i] - reference);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = expf(sc[i][j] - reference);
        sum += p;
        sh.w[ty + 16 * i][tx + 16 * j] = p * dropout_factor<float>(s, block, qi, k0 + tx + 16 * j);
      }
      l[i] = l[i] * alpha + row_sum(sum);
      m[i] = m_new;
#pragma unroll
      for (int b = 0; b < kCols / 16; ++b) acc[i][b] *= alpha;
    }
    __syncthreads();
    accumulate<kCols>(rows_at(v, first_key, s.heads * s.dv, s.k_len, k0), col0, s.dv, acc, sh, xs);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t qi = q0 + ty + 16 * i;
    if (qi >= s.q_len) continue;
    const int64_t row = first_query + qi * s.heads;
    const float inverse = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
#pragma unroll
    for (int b = 0; b < kCols / 16; ++b) {
      const int64_t c = col0 + tx + 16 * b;
      if (c < s.dv) o[row * s.dv + c] = from_float<T>(acc[i][b] * inverse);
    }
    if (blockIdx.y == 0 && tx == 0) logsumexp[row] = m[i] + logf(l[i]);
  }
}

// ---- backward --------------------------------------------------------------------------------------

// delta[row] = Σ_c dO[row][c] · O[row][c]. Launch: blocks of 256 threads, one warp per row (grid-stride).
template <class T>
__global__ void delta_kernel(const T* o, const T* grad_o, float* delta, int64_t rows, int64_t dv) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    float sum = 0.0f;
    for (int64_t c = lane; c < dv; c += 32) sum = fmaf(to_float(grad_o[row * dv + c]), to_float(o[row * dv + c]), sum);
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) delta[row] = sum;
  }
}

// dV_slice of one key tile. Launch: grid (key tiles, value slices, blocks), kBlockThreads threads.
template <class T, int kCols>
__global__ void __launch_bounds__(kBlockThreads) value_grad_kernel(const T* q, const T* k, const T* grad_o,
                                                                   const float* logsumexp, T* grad_v, AttentionShape s) {
  __shared__ Shared sh;
  __shared__ float xs[kSlab][kCols];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t block = blockIdx.z;
  const int64_t k0 = blockIdx.x * int64_t(kTile);
  const int64_t col0 = blockIdx.y * int64_t(kCols);
  const int64_t first_query = query_row(s, block, 0), first_key = key_row(s, block, 0);
  const Rows<T> K = rows_at(k, first_key, s.heads * s.dz, s.k_len, k0);
  // The first query that sees key k0 is k0 - (k_len - q_len).
  const int64_t first_visible = max(int64_t(0), k0 - (s.k_len - s.q_len));

  float acc[4][kCols / 16] = {};
  for (int64_t q0 = first_visible / kTile * kTile; q0 < s.q_len; q0 += kTile) {
    float st[4][4] = {};  // Sᵀ: rows are keys, columns queries
    tile_product(K, rows_at(q, first_query, s.heads * s.dz, s.q_len, q0), s.dz, st, sh);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t qi = q0 + tx + 16 * j;
      const float lse = qi < s.q_len ? logsumexp[first_query + qi * s.heads] : 0.0f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t kj = k0 + ty + 16 * i;
        const float p = attends(s, qi, kj) ? expf(st[i][j] * static_cast<float>(s.scale) - lse) : 0.0f;
        sh.w[ty + 16 * i][tx + 16 * j] = p * dropout_factor<float>(s, block, qi, kj);
      }
    }
    __syncthreads();
    accumulate<kCols>(rows_at(grad_o, first_query, s.heads * s.dv, s.q_len, q0), col0, s.dv, acc, sh, xs);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t kj = k0 + ty + 16 * i;
    if (kj >= s.k_len) continue;
    const int64_t row = first_key + kj * s.heads;
#pragma unroll
    for (int b = 0; b < kCols / 16; ++b) {
      const int64_t c = col0 + tx + 16 * b;
      if (c < s.dv) grad_v[row * s.dv + c] = from_float<T>(acc[i][b]);
    }
  }
}

// dQ (blockIdx.y = 0: the block owns a query tile) or dK (blockIdx.y = 1: a key tile).
// Launch: grid (max(query tiles, key tiles), 2, blocks), kBlockThreads threads. kDz >= dz is the
// accumulator width (64, 128 or 256).
template <class T, int kDz>
__global__ void __launch_bounds__(kBlockThreads) qk_grad_kernel(const T* q, const T* k, const T* v, const T* grad_o,
                                                                const float* logsumexp, const float* delta, T* grad_q,
                                                                T* grad_k, AttentionShape s) {
  __shared__ Shared sh;
  __shared__ float xs[kSlab][kDz];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const bool key_rows = blockIdx.y == 1;
  const int64_t row_tiles = key_rows ? tiles(s.k_len) : tiles(s.q_len);
  if (blockIdx.x >= row_tiles) return;
  const int64_t block = blockIdx.z;
  const int64_t first_query = query_row(s, block, 0), first_key = key_row(s, block, 0);
  const int64_t offset = s.k_len - s.q_len;
  // Query tiles heaviest (last) first; key tiles heaviest (first) first.
  const int64_t r0 = (key_rows ? blockIdx.x : row_tiles - 1 - blockIdx.x) * int64_t(kTile);
  const int64_t z_stride = s.heads * s.dz, v_stride = s.heads * s.dv;

  // Row operands (the tile this block owns) and the column range it loops over.
  const Rows<T> row_z = key_rows ? rows_at(k, first_key, z_stride, s.k_len, r0) : rows_at(q, first_query, z_stride, s.q_len, r0);
  const Rows<T> row_v = key_rows ? rows_at(v, first_key, v_stride, s.k_len, r0)
                                 : rows_at(grad_o, first_query, v_stride, s.q_len, r0);
  int64_t c_begin, c_end;
  if (key_rows) {
    c_begin = max(int64_t(0), r0 - offset) / kTile * kTile;
    c_end = s.q_len;
  } else {
    c_begin = 0;
    c_end = min(r0 + kTile, s.q_len) - 1 + offset + 1;  // one past the last key the tile's last row sees
  }

  float acc[4][kDz / 16] = {};
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
    const Rows<T> col_z = key_rows ? rows_at(q, first_query, z_stride, s.q_len, c0) : rows_at(k, first_key, z_stride, s.k_len, c0);
    const Rows<T> col_v = key_rows ? rows_at(grad_o, first_query, v_stride, s.q_len, c0)
                                   : rows_at(v, first_key, v_stride, s.k_len, c0);
    float sc[4][4] = {}, dp[4][4] = {};
    tile_product(row_z, col_z, s.dz, sc, sh);  // S or Sᵀ
    tile_product(row_v, col_v, s.dv, dp, sh);  // dO Vᵀ or its transpose
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t r = r0 + ty + 16 * i, c = c0 + tx + 16 * j;
        const int64_t qi = key_rows ? c : r, kj = key_rows ? r : c;
        float ds = 0.0f;
        if (attends(s, qi, kj)) {
          const int64_t row = first_query + qi * s.heads;
          const float p = expf(sc[i][j] * static_cast<float>(s.scale) - logsumexp[row]);
          ds = p * (dp[i][j] * dropout_factor<float>(s, block, qi, kj) - delta[row]);
        }
        sh.w[ty + 16 * i][tx + 16 * j] = ds * static_cast<float>(s.scale);
      }
    __syncthreads();
    accumulate<kDz>(col_z, 0, s.dz, acc, sh, xs);
  }

  T* out = key_rows ? grad_k : grad_q;
  const int64_t first_row = key_rows ? first_key : first_query, rows = key_rows ? s.k_len : s.q_len;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = r0 + ty + 16 * i;
    if (r >= rows) continue;
#pragma unroll
    for (int b = 0; b < kDz / 16; ++b) {
      const int64_t e = tx + 16 * b;
      if (e < s.dz) out[(first_row + r * s.heads) * s.dz + e] = from_float<T>(acc[i][b]);
    }
  }
}

// Calls f(T{}) for the storage type of a supported dtype.
template <class F>
void dispatch_attention_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    default: MGL_FAIL("chunk_attention: the CUDA kernels support f32 and bf16, got ", dtype_name(dtype));
  }
}

dim3 grid_of(int64_t x, int64_t y, int64_t blocks) {
  MGL_CHECK(blocks <= 65535, "chunk_attention: batch * chunks * heads = ", blocks, " exceeds the grid limit 65535");
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(blocks));
}

}  // namespace

void chunk_attention_forward(const void* q, const void* k, const void* v, void* o, float* logsumexp, DType dtype,
                             const AttentionShape& s, Stream stream) {
  const int64_t blocks = s.batch * s.chunks * s.heads;
  if (blocks == 0 || s.q_len == 0 || s.dv == 0) return;
  MGL_CHECK(s.dz <= kMaxHeadDim, "chunk_attention: q/k head dim ", s.dz, " exceeds ", kMaxHeadDim);
  dispatch_attention_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto launch = [&](auto cols) {
      constexpr int kCols = decltype(cols)::value;
      forward_kernel<T, kCols><<<grid_of(tiles(s.q_len), (s.dv + kCols - 1) / kCols, blocks), kBlockThreads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(o), logsumexp, s);
    };
    if (s.dv <= 64) launch(std::integral_constant<int, 64>{});
    else launch(std::integral_constant<int, 128>{});
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void chunk_attention_backward(const void* q, const void* k, const void* v, const void* o, const void* grad_o,
                              const float* logsumexp, float* delta, void* grad_q, void* grad_k, void* grad_v, DType dtype,
                              const AttentionShape& s, Stream stream) {
  const int64_t blocks = s.batch * s.chunks * s.heads;
  if (blocks == 0 || s.q_len == 0) return;
  MGL_CHECK(s.dz <= kMaxHeadDim, "chunk_attention: q/k head dim ", s.dz, " exceeds ", kMaxHeadDim);
  dispatch_attention_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = blocks * s.q_len;
    delta_kernel<<<blocks_for(rows, kThreads / 32), kThreads, 0, stream>>>(
        static_cast<const T*>(o), static_cast<const T*>(grad_o), delta, rows, s.dv);
    MGL_CUDA_CHECK_LAUNCH();
    auto launch_value = [&](auto cols) {
      constexpr int kCols = decltype(cols)::value;
      value_grad_kernel<T, kCols><<<grid_of(tiles(s.k_len), (s.dv + kCols - 1) / kCols, blocks), kBlockThreads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(grad_o), logsumexp,
          static_cast<T*>(grad_v), s);
    };
    if (s.dv > 0) {
      if (s.dv <= 64) launch_value(std::integral_constant<int, 64>{});
      else launch_value(std::integral_constant<int, 128>{});
      MGL_CUDA_CHECK_LAUNCH();
    }
    auto launch_qk = [&](auto width) {
      constexpr int kDz = decltype(width)::value;
      qk_grad_kernel<T, kDz><<<grid_of(std::max(tiles(s.q_len), tiles(s.k_len)), 2, blocks), kBlockThreads, 0, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<const T*>(grad_o),
          logsumexp, delta, static_cast<T*>(grad_q), static_cast<T*>(grad_k), s);
    };
    if (s.dz <= 64) launch_qk(std::integral_constant<int, 64>{});
    else if (s.dz <= 128) launch_qk(std::integral_constant<int, 128>{});
    else launch_qk(std::integral_constant<int, 256>{});
    MGL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mgl::cuda

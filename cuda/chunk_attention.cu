// Chunk-wise causal attention, FlashAttention-style (Dao et al. 2022; Dao 2023): the c x c
// probability matrix of a block never reaches global memory; it is rebuilt tile by tile from Q, K
// and the per-row logsumexp of S, which is all the forward saves.
//
// Every kernel works on 64 x 64 score tiles: rows are a tile of the block's queries or keys (the
// tile a CUDA block owns), columns a tile of the other side (the tiles it loops over). One kernel
// shape does all the heavy work, a weighted sum over the column side:
//
//   out[r, slice] = Σ_c W[r, c] · X[c, slice]
//
//   output   rows     W                        X     kernel
//   O        queries  P̃   = P ⊙ M/(1-p)       V     forward, slices of dv
//   dV       keys     P̃ᵀ                      dO    backward, slices of dv
//   dQ       queries  dS  · scale             K     backward, all of dz
//   dK       keys     dSᵀ · scale             Q     backward, all of dz
//
// with P = exp(scale·S - logsumexp) and dS = P ⊙ (dP ⊙ M/(1-p) - D), D = rowsum(dO ⊙ O), all
// elementwise once S (and dP = dO Vᵀ) of the tile are known. Because P comes out normalised, the
// output accumulator is never rescaled, so the forward runs in two passes: a statistics kernel
// (online max and sum over the key tiles, S only) writes the logsumexp, then the weighted sum.
//
// DropKey: the dropout mask joins the causal one instead (in_softmax() in base/chunk_attention_math.h)
// and M/(1-p) is 1, so the statistics pass and every recompute of P skip the dropped logits alike.
// A row left without logits has logsumexp -inf, which is never read: all of its weights are
// skipped, and its O and D are 0.
//
// Work, in multiply-adds per (query, key) pair of the causal triangle (the model needs dz + dv in
// forward and 3 dz + 2 dv in backward): splitting dv = 2048 into slices of 256 recomputes S = Q Kᵀ
// once per slice, so the forward costs dz + 8 (dz + 256) = 4352 against 2304 for dz = 256 — the
// price of a 64 x 256 f32 accumulator that stays on chip (a whole-dv one would not fit; a
// materialised P would cost c² per head of memory traffic instead). The backward costs 8 (dz + 256)
// for dV plus 2 (dz + dv + dz) for dQ and dK = 9216 against 4864: dQ and dK come from different
// blocks (no atomics), so each recomputes the dP tile, the dv = 2048 reduction.
//
// Two engines do the tile arithmetic:
//   FmaEngine (f32, and bf16 that tensor cores cannot take): 256 threads, thread (ty, tx) owns the
//     4 x 4 micro-tile of rows ty + 16a and columns tx + 16b; f32 FMAs on operands staged in shared
//     memory in f32; value slices of 128 columns.
//   MmaEngine (bf16 with head dims that are multiples of 8 and 16-byte aligned rows): 8 warps, each
//     owning 16 rows and half the columns of a tile; tensor cores through nvcuda::wmma (16 x 16 x 16,
//     bf16 inputs, f32 accumulation); W is rounded to bf16 before its product. Operand slabs are
//     double-buffered with cp.async (the next slab loads while the current one is multiplied) and
//     the X tile loads while the weights are computed.
// Both write each score tile to shared memory; the elementwise step between products is common.
#include <cuda_pipeline.h>
#include <mma.h>

#include <cfloat>
#include <cstdint>

#include "cuda/chunk_attention.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTile = 64;          // rows and columns of a score tile
constexpr int kScoreLd = kTile + 4;  // row pitch of score tiles in shared memory (floats; a multiple of 4 for wmma)
constexpr int kMaxHeadDim = 256;   // widest dz the score-gradient accumulators hold

__host__ __device__ inline int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }

// One side (queries or keys) of an attention block: the (token, head) row index of its element 0
// and its number of tokens. Consecutive tokens of a side are `heads` rows apart.
struct Side {
  int64_t row0 = 0, length = 0;
};

// Up to 64 consecutive tokens of one side of a [.., tokens, heads, width] tensor; rows at or past
// `rows` do not exist (they read as zeros, and are not written).
template <class P>
struct Panel {
  P* base = nullptr;  // the panel's first row
  int64_t stride = 0;  // elements between consecutive rows
  int rows = 0;
};

template <class P>
__device__ __forceinline__ Panel<P> panel(P* data, const Side& side, int64_t heads, int64_t width, int64_t start) {
  const int64_t left = side.length - start;
  return {data + (side.row0 + start * heads) * width, heads * width, static_cast<int>(left < kTile ? left : kTile)};
}

// ---- FMA engine ------------------------------------------------------------------------------------

template <class T, int kWidth>
struct FmaEngine {
  using Storage = T;
  using Weight = float;
  static constexpr int kThreads = 256;
  static constexpr int kMinBlocks = 1;
  static constexpr int kCols = kWidth;  // output columns per block
  static constexpr int kSlab = 16;      // reduction slab staged per step

  struct Shared {
    float a[kSlab][kTile + 1];  // slab of the row operand, transposed ([e][row]); +1 spreads the stores over banks
    float b[kSlab][kTile + 1];  // slab of the column operand
    float s[kTile][kScoreLd];   // S tile
    float dp[kTile][kScoreLd];  // dP tile (score gradients only)
    float w[kTile][kTile];      // weights W
    float x[kSlab][kCols];      // 16 rows of X
  };
  struct Accumulator {
    float v[4][kCols / 16];
  };

  __device__ static void zero(Accumulator& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int b = 0; b < kCols / 16; ++b) acc.v[i][b] = 0.0f;
  }

  // out = A Bᵀ (64 x 64) over the first `len` columns of both panels.
  __device__ static void product(const Panel<const T>& A, const Panel<const T>& B, int64_t len, float (*out)[kScoreLd],
                                 Shared& sh) {
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float s[4][4] = {};
    for (int64_t e0 = 0; e0 < len; e0 += kSlab) {
      // 64 rows x 16 columns of each operand; consecutive threads read consecutive columns.
      for (int n = tid; n < kTile * kSlab; n += kThreads) {
        const int row = n / kSlab, e = n % kSlab;
        const bool inside = e0 + e < len;
        sh.a[e][row] = (inside && row < A.rows) ? to_float(A.base[row * A.stride + e0 + e]) : 0.0f;
        sh.b[e][row] = (inside && row < B.rows) ? to_float(B.base[row * B.stride + e0 + e]) : 0.0f;
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
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) out[ty + 16 * i][tx + 16 * j] = s[i][j];
  }

  __device__ static void prefetch(const Panel<const T>&, int64_t, int64_t, Shared&) {}  // accumulate() loads X itself

  // acc += W · X[0..64, col0 .. col0 + kCols) (columns at or past `width` read as zeros).
  __device__ static void accumulate(const Panel<const T>& X, int64_t col0, int64_t width, Accumulator& acc, Shared& sh) {
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    for (int j0 = 0; j0 < kTile; j0 += kSlab) {
      for (int n = tid; n < kSlab * kCols; n += kThreads) {
        const int j = n / kCols, c = n % kCols;
        sh.x[j][c] = (j0 + j < X.rows && col0 + c < width) ? to_float(X.base[(j0 + j) * X.stride + col0 + c]) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int j = 0; j < kSlab; ++j) {
        float wv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) wv[i] = sh.w[ty + 16 * i][j0 + j];
#pragma unroll
        for (int b = 0; b < kCols / 16; ++b) {
          const float x = sh.x[j][tx + 16 * b];
#pragma unroll
          for (int i = 0; i < 4; ++i) acc.v[i][b] = fmaf(wv[i], x, acc.v[i][b]);
        }
      }
      __syncthreads();
    }
  }

  __device__ static void store(const Accumulator& acc, const Panel<T>& out, int64_t col0, int64_t width, Shared&) {
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = ty + 16 * i;
      if (row >= out.rows) continue;
#pragma unroll
      for (int b = 0; b < kCols / 16; ++b) {
        const int64_t c = col0 + tx + 16 * b;
        if (c < width) out.base[row * out.stride + c] = from_float<T>(acc.v[i][b]);
      }
    }
  }
};

// ---- tensor-core engine (bf16) -----------------------------------------------------------------------

template <int kWidth>
struct MmaEngine {
  using T = __nv_bfloat16;
  using Storage = T;
  using Weight = T;
  // 8 warps: warp w owns rows 16 (w % 4) .. + 15 of every tile and the half w / 4 of its columns
  // (of the 64 score columns in a product, of the kCols output columns in an accumulation).
  static constexpr int kThreads = 256;
  static constexpr int kMinBlocks = 2;  // caps registers at 128 per thread
  static constexpr int kCols = kWidth;
  static constexpr int kSlab = 64;  // reduction slab staged per step
  static constexpr int kPad = 8;    // bf16 row padding: rows 16 bytes apart in bank space, 16-byte aligned

  // wmma needs 32-byte aligned tile pointers: every array starts on 128 bytes, every pitch is a
  // multiple of 16 bytes and fragments start at multiples of 16 rows and columns. Arrays whose
  // lifetimes do not overlap share storage: the product's slabs and the X tile of an accumulation;
  // the S tile and the output scratch.
  struct Shared {
    union {
      struct {
        alignas(128) T a[2][kTile][kSlab + kPad];  // double-buffered slabs of the row operand
        alignas(128) T b[2][kTile][kSlab + kPad];  // and of the column operand
      };
      alignas(128) T x[kTile][kCols + kPad];
    };
    union {
      alignas(128) float s[kTile][kScoreLd];
      alignas(128) float scratch[kThreads / 32][16][16];  // one accumulator tile per warp, for the output
    };
    alignas(128) float dp[kTile][kScoreLd];
    alignas(128) T w[kTile][kTile + kPad];
  };
  using Fragment = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  static constexpr int kOutFragments = kCols / 32;  // per warp: 16 rows x kCols / 2 columns
  struct Accumulator {
    Fragment f[kOutFragments];
  };

  __device__ static int row_block() { return threadIdx.x / 32 % 4; }
  __device__ static int column_half() { return threadIdx.x / 128; }

  __device__ static void zero(Accumulator& acc) {
#pragma unroll
    for (int n = 0; n < kOutFragments; ++n) wmma::fill_fragment(acc.f[n], 0.0f);
  }

  // Starts copying panel columns [col0, col0 + kW) into dst[0..64, 0..kW) with cp.async, 16 bytes
  // (8 bf16) per copy; rows past the panel and columns past `len` (a multiple of 8) are zeroed.
  // The data is there after __pipeline_commit(), __pipeline_wait_prior() and __syncthreads().
  template <int kW, int kLd>
  __device__ static void stage(T (*dst)[kLd], const Panel<const T>& p, int64_t col0, int64_t len) {
    constexpr int kVectors = kW / 8;
#pragma unroll 2
    for (int n = threadIdx.x; n < kTile * kVectors; n += kThreads) {
      const int row = n / kVectors, c = (n % kVectors) * 8;
      if (row < p.rows && col0 + c < len) __pipeline_memcpy_async(&dst[row][c], p.base + row * p.stride + col0 + c, 16);
      else *reinterpret_cast<uint4*>(&dst[row][c]) = make_uint4(0u, 0u, 0u, 0u);
    }
  }

  // c[n] += A[r .. r + 16, 0 .. kDepth) · B_n for this warp, where A is row-major in shared memory and
  // B_n (kDepth x 16) starts at b_at(kk, n) for depth kk, with layout BLayout and pitch ldb.
  template <class BLayout, int kDepth, int kN, int kLdA, class BAt>
  __device__ static void warp_mma(Fragment (&c)[kN], const T (*a)[kLdA], int r, unsigned ldb, BAt b_at) {
#pragma unroll
    for (int kk = 0; kk < kDepth; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, &a[r][kk], kLdA);
#pragma unroll
      for (int n = 0; n < kN; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> fb;
        wmma::load_matrix_sync(fb, b_at(kk, n), ldb);
        wmma::mma_sync(c[n], fa, fb, c[n]);
      }
    }
  }

  // out = A Bᵀ over `len` columns, slab after slab: while the tensor cores work on slab i, slab
  // i + 1 is in flight into the other buffer.
  __device__ static void product(const Panel<const T>& A, const Panel<const T>& B, int64_t len, float (*out)[kScoreLd],
                                 Shared& sh) {
    const int r = 16 * row_block(), c0 = 32 * column_half();
    Fragment c[2];
    wmma::fill_fragment(c[0], 0.0f);
    wmma::fill_fragment(c[1], 0.0f);
    const int64_t slabs = (len + kSlab - 1) / kSlab;
    if (slabs > 0) {
      stage<kSlab>(sh.a[0], A, 0, len);
      stage<kSlab>(sh.b[0], B, 0, len);
      __pipeline_commit();
    }
    for (int64_t i = 0; i < slabs; ++i) {
      const int buffer = static_cast<int>(i % 2);
      if (i + 1 < slabs) {
        stage<kSlab>(sh.a[1 - buffer], A, (i + 1) * kSlab, len);
        stage<kSlab>(sh.b[1 - buffer], B, (i + 1) * kSlab, len);
      }
      __pipeline_commit();
      __pipeline_wait_prior(1);  // this thread's copies of slab i have landed
      __syncthreads();           // and everyone else's
      // Bᵀ as a col-major k x n matrix: element (k, j) of B_n is B[c0 + 16n + j][kk + k].
      warp_mma<wmma::col_major, kSlab>(c, sh.a[buffer], r, kSlab + kPad,
                                       [&](int kk, int n) { return &sh.b[buffer][c0 + 16 * n][kk]; });
      __syncthreads();  // the buffer is refilled next iteration
    }
    wmma::store_matrix_sync(&out[r][c0], c[0], kScoreLd, wmma::mem_row_major);
    wmma::store_matrix_sync(&out[r][c0 + 16], c[1], kScoreLd, wmma::mem_row_major);
  }

  // Starts loading the X tile of the next accumulate() (the slabs it shares storage with are idle
  // once the products are done), so the copy overlaps the computation of the weights.
  __device__ static void prefetch(const Panel<const T>& X, int64_t col0, int64_t width, Shared& sh) {
    stage<kCols>(sh.x, X, col0, width);
    __pipeline_commit();
  }

  // acc += W · X, X already requested by prefetch().
  __device__ static void accumulate(const Panel<const T>&, int64_t, int64_t, Accumulator& acc, Shared& sh) {
    const int r = 16 * row_block(), c0 = column_half() * (kCols / 2);
    __pipeline_wait_prior(0);
    __syncthreads();
    warp_mma<wmma::row_major, kTile>(acc.f, sh.w, r, kCols + kPad,
                                     [&](int kk, int n) { return &sh.x[kk][c0 + 16 * n]; });
    __syncthreads();
  }

  // The fragment layout is opaque: each warp stores a fragment to its scratch tile, then writes it out.
  __device__ static void store(const Accumulator& acc, const Panel<T>& out, int64_t col0, int64_t width, Shared& sh) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = 16 * row_block(), c0 = column_half() * (kCols / 2);
#pragma unroll
    for (int n = 0; n < kOutFragments; ++n) {
      wmma::store_matrix_sync(&sh.scratch[warp][0][0], acc.f[n], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int row = r + e / 16;
        const int64_t c = col0 + c0 + 16 * n + e % 16;
        if (row < out.rows && c < width) out.base[row * out.stride + c] = __float2bfloat16_rn(sh.scratch[warp][e / 16][e % 16]);
      }
      __syncwarp();
    }
  }
};

// ---- the shared steps ----------------------------------------------------------------------------------

template <class T>
struct Inputs {
  const T *q, *k, *v, *grad_o;
  const float *logsumexp, *delta;
};

// What a weighted-sum launch computes, per role (0: rows are queries, 1: rows are keys).
template <class T>
struct WeightedSum {
  const T* x[2] = {nullptr, nullptr};  // X: on the key side for role 0, on the query side for role 1
  T* out[2] = {nullptr, nullptr};      // the output, on the rows' side
  int64_t width = 0;                   // columns of X and of the output
};

enum class Weights { probabilities, score_gradients };

// W[r, c] of the tile (rows r0.., columns c0..) from the scores in sh.s (and sh.dp).
template <class Engine, Weights kWeights>
__device__ void compute_weights(typename Engine::Shared& sh, const AttentionShape& s, int64_t block, bool key_rows,
                                int64_t r0, int64_t c0, int64_t query_row0, const float* logsumexp, const float* delta) {
  const float scale = static_cast<float>(s.scale);
#pragma unroll 1
  for (int n = threadIdx.x; n < kTile * kTile; n += blockDim.x) {
    const int r = n / kTile, c = n % kTile;
    const int64_t qi = key_rows ? c0 + c : r0 + r, kj = key_rows ? r0 + r : c0 + c;
    float value = 0.0f;
    if (in_softmax(s, block, qi, kj)) {
      const int64_t row = query_row0 + qi * s.heads;
      const float p = expf(sh.s[r][c] * scale - logsumexp[row]);
      const float factor = dropout_factor<float>(s, block, qi, kj);
      if constexpr (kWeights == Weights::probabilities) value = p * factor;
      else value = scale * p * (sh.dp[r][c] * factor - delta[row]);
    }
    sh.w[r][c] = from_float<typename Engine::Weight>(value);
  }
}

// Forward pass 1: the logsumexp of every query row, by an online max and sum over the key tiles
// (-inf for a row whose every key is dropped by DropKey). Launch: grid (query tiles, 1, blocks),
// Engine::kThreads threads, sizeof(Engine::Shared) bytes of dynamic shared memory. Each row of a
// score tile is read by kThreads / 64 adjacent lanes.
template <class Engine>
__global__ void __launch_bounds__(Engine::kThreads) softmax_stats_kernel(Inputs<typename Engine::Storage> in,
                                                                         float* logsumexp, AttentionShape s) {
  using T = typename Engine::Storage;
  extern __shared__ __align__(128) unsigned char raw[];
  auto& sh = *reinterpret_cast<typename Engine::Shared*>(raw);
  constexpr int kGroup = Engine::kThreads / kTile;
  const int64_t block = blockIdx.z;
  const Side queries{query_row(s, block, 0), s.q_len}, keys{key_row(s, block, 0), s.k_len};
  const int64_t r0 = (gridDim.x - 1 - blockIdx.x) * int64_t(kTile);  // the longest (last) tiles first
  const Panel<const T> Q = panel(in.q, queries, s.heads, s.dz, r0);
  const int64_t last_key = min(r0 + kTile, s.q_len) - 1 + (s.k_len - s.q_len);
  const int row = threadIdx.x / kGroup, part = threadIdx.x % kGroup;
  const int64_t qi = r0 + row;
  const float scale = static_cast<float>(s.scale);

  float m = -INFINITY, l = 0.0f;
  for (int64_t k0 = 0; k0 <= last_key; k0 += kTile) {
    Engine::product(Q, panel(in.k, keys, s.heads, s.dz, k0), s.dz, sh.s, sh);
    __syncthreads();
    // Each thread turns its scores into scaled logits, -inf outside the softmax (the mask is
    // evaluated once per element: under DropKey it costs a Philox draw).
    float tile_max = -INFINITY;
    for (int c = part; c < kTile; c += kGroup) {
      const float logit = in_softmax(s, block, qi, k0 + c) ? sh.s[row][c] * scale : -INFINITY;
      sh.s[row][c] = logit;
      tile_max = fmaxf(tile_max, logit);
    }
    for (int offset = kGroup / 2; offset > 0; offset /= 2)
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
    const float m_new = fmaxf(m, tile_max);
    const float reference = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet keeps l = 0
    float sum = 0.0f;
    for (int c = part; c < kTile; c += kGroup) sum += expf(sh.s[row][c] - reference);  // expf(-inf) = 0
    for (int offset = kGroup / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    l = l * expf(m - reference) + sum;
    m = m_new;
    __syncthreads();  // sh.s is overwritten by the next product
  }
  if (part == 0 && qi < s.q_len) logsumexp[queries.row0 + qi * s.heads] = m + logf(l);
}

// out[r, slice] = Σ_c W[r, c] X[c, slice] (the table at the top of the file).
// Launch: grid (row tiles, slices of Engine::kCols output columns, blocks * roles), Engine::kThreads
// threads, sizeof(Engine::Shared) bytes of dynamic shared memory. blockIdx.z = block + blocks *
// (role - first_role). Query tiles run last-first and key tiles first-first: the longest loops of
// the causal triangle start first.
template <class Engine, Weights kWeights>
__global__ void __launch_bounds__(Engine::kThreads, Engine::kMinBlocks) weighted_sum_kernel(Inputs<typename Engine::Storage> in,
                                                                        WeightedSum<typename Engine::Storage> job,
                                                                        AttentionShape s, int first_role, int64_t blocks) {
  using T = typename Engine::Storage;
  extern __shared__ __align__(128) unsigned char raw[];
  auto& sh = *reinterpret_cast<typename Engine::Shared*>(raw);
  const int64_t block = blockIdx.z % blocks;
  const int role = first_role + static_cast<int>(blockIdx.z / blocks);
  const bool key_rows = role == 1;
  const Side queries{query_row(s, block, 0), s.q_len}, keys{key_row(s, block, 0), s.k_len};
  const Side rows = key_rows ? keys : queries;
  const Side cols = key_rows ? queries : keys;
  const int64_t row_tiles = tiles(rows.length);
  if (blockIdx.x >= row_tiles) return;  // the grid covers the longer side
  const int64_t r0 = (key_rows ? blockIdx.x : row_tiles - 1 - blockIdx.x) * int64_t(kTile);
  const int64_t col0 = blockIdx.y * int64_t(Engine::kCols);
  const int64_t offset = s.k_len - s.q_len;  // query i sees key j iff j <= i + offset

  // The column tiles that meet the row tile: for query rows, keys up to the last row's diagonal;
  // for key rows, queries from the first one that sees the tile's first key.
  const int64_t c_begin = key_rows ? (r0 - offset > 0 ? (r0 - offset) / kTile * kTile : 0) : 0;
  const int64_t c_end = key_rows ? s.q_len : min(r0 + kTile, s.q_len) + offset;

  // Row operands: S (or Sᵀ) = A_z B_zᵀ over dz, dP (or dPᵀ) = A_v B_vᵀ over dv.
  const Panel<const T> A_z = panel(key_rows ? in.k : in.q, rows, s.heads, s.dz, r0);
  const T* col_z = key_rows ? in.q : in.k;
  const T* x = key_rows ? job.x[1] : job.x[0];

  typename Engine::Accumulator acc;
  Engine::zero(acc);
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
    Engine::product(A_z, panel(col_z, cols, s.heads, s.dz, c0), s.dz, sh.s, sh);
    if constexpr (kWeights == Weights::score_gradients) {
      const Panel<const T> A_v = panel(key_rows ? in.v : in.grad_o, rows, s.heads, s.dv, r0);
      Engine::product(A_v, panel(key_rows ? in.grad_o : in.v, cols, s.heads, s.dv, c0), s.dv, sh.dp, sh);
    }
    const Panel<const T> X = panel(x, cols, s.heads, job.width, c0);
    Engine::prefetch(X, col0, job.width, sh);
    __syncthreads();
    compute_weights<Engine, kWeights>(sh, s, block, key_rows, r0, c0, queries.row0, in.logsumexp, in.delta);
    __syncthreads();
    Engine::accumulate(X, col0, job.width, acc, sh);
  }
  Engine::store(acc, panel(key_rows ? job.out[1] : job.out[0], rows, s.heads, job.width, r0), col0, job.width, sh);
}

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

// ---- launches ----------------------------------------------------------------------------------------

dim3 grid_of(int64_t x, int64_t y, int64_t z) {
  MGL_CHECK(z <= 65535, "chunk_attention: batch * chunks * heads (times 2 in backward) = ", z,
            " exceeds the CUDA grid limit 65535");
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, int threads, size_t shared_bytes, Stream stream, const Args&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  MGL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
  kernel<<<grid, threads, shared_bytes, stream>>>(args...);
  MGL_CUDA_CHECK_LAUNCH();
}

// Calls f(std::integral_constant<int, W>{}) for the narrowest W in {64, 128, 256} >= min(width, 256)
// (FMA: at most kMax columns, fewer registers).
template <int kMax, class F>
void dispatch_width(int64_t width, F&& f) {
  if (width <= 64) f(std::integral_constant<int, 64>{});
  else if constexpr (kMax == 128) f(std::integral_constant<int, 128>{});
  else if (width <= 128) f(std::integral_constant<int, 128>{});
  else f(std::integral_constant<int, 256>{});
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Tensor cores take bf16 with rows of whole 16-byte vectors.
bool tensor_cores_apply(DType dtype, const AttentionShape& s, std::initializer_list<const void*> pointers) {
  if (dtype != DType::bf16 || s.dz % 8 != 0 || s.dv % 8 != 0) return false;
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// The two engine families: FMA (any dtype, widths up to 128 for value slices) and tensor cores.
template <class T>
struct FmaFamily {
  template <int kWidth>
  using Engine = FmaEngine<T, kWidth>;
  static constexpr int kMaxSlice = 128;
};
struct MmaFamily {
  template <int kWidth>
  using Engine = MmaEngine<kWidth>;
  static constexpr int kMaxSlice = 256;
};

// Launches weighted_sum_kernel for `job` with the engine of `Family` whose output width is the
// narrowest of 64, 128, 256 covering min(width, kMax); grid (x_tiles, slices, blocks * roles).
template <class Family, Weights kWeights, int kMax, class T>
void weighted_sum(const Inputs<T>& in, const WeightedSum<T>& job, const AttentionShape& s, int first_role, int roles,
                  int64_t x_tiles, Stream stream) {
  const int64_t blocks = s.batch * s.chunks * s.heads;
  dispatch_width<kMax>(job.width, [&](auto width) {
    using E = typename Family::template Engine<decltype(width)::value>;
    launch(weighted_sum_kernel<E, kWeights>, grid_of(x_tiles, (job.width + E::kCols - 1) / E::kCols, roles * blocks),
           E::kThreads, sizeof(typename E::Shared), stream, in, job, s, first_role, blocks);
  });
}

template <class Family, class T>
void forward_with(Inputs<T> in, T* o, float* logsumexp, const AttentionShape& s, Stream stream) {
  using Stats = typename Family::template Engine<64>;
  launch(softmax_stats_kernel<Stats>, grid_of(tiles(s.q_len), 1, s.batch * s.chunks * s.heads), Stats::kThreads,
         sizeof(typename Stats::Shared), stream, in, logsumexp, s);
  in.logsumexp = logsumexp;
  WeightedSum<T> values;  // O = P̃ V: query rows
  values.x[0] = in.v;
  values.out[0] = o;
  values.width = s.dv;
  weighted_sum<Family, Weights::probabilities, Family::kMaxSlice>(in, values, s, 0, 1, tiles(s.q_len), stream);
}

template <class Family, class T>
void backward_with(const Inputs<T>& in, T* grad_q, T* grad_k, T* grad_v, const AttentionShape& s, Stream stream) {
  WeightedSum<T> values;  // dV = P̃ᵀ dO: key rows
  values.x[1] = in.grad_o;
  values.out[1] = grad_v;
  values.width = s.dv;
  weighted_sum<Family, Weights::probabilities, Family::kMaxSlice>(in, values, s, 1, 1, tiles(s.k_len), stream);
  WeightedSum<T> scores;  // dQ = dS K (query rows) and dK = dSᵀ Q (key rows), in one launch
  scores.x[0] = in.k;
  scores.x[1] = in.q;
  scores.out[0] = grad_q;
  scores.out[1] = grad_k;
  scores.width = s.dz;
  weighted_sum<Family, Weights::score_gradients, kMaxHeadDim>(in, scores, s, 0, 2,
                                                              std::max(tiles(s.q_len), tiles(s.k_len)), stream);
}

}  // namespace

void chunk_attention_forward(const ChunkAttentionForwardArgs& args, Stream stream) {
  const AttentionShape& s = args.shape;
  const DType dtype = args.dtype;
  const void *q = args.q, *k = args.k, *v = args.v;
  void* o = args.o;
  float* logsumexp = args.logsumexp;
  if (s.batch * s.chunks * s.heads == 0 || s.q_len == 0) return;
  MGL_CHECK(s.dz <= kMaxHeadDim, "chunk_attention: q/k head dim ", s.dz, " exceeds ", kMaxHeadDim);
  auto run = [&](auto tag, auto family) {
    using T = decltype(tag);
    const Inputs<T> in{static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), nullptr, nullptr,
                       nullptr};
    forward_with<decltype(family)>(in, static_cast<T*>(o), logsumexp, s, stream);
  };
  if (tensor_cores_apply(dtype, s, {q, k, v, o})) run(__nv_bfloat16{}, MmaFamily{});
  else if (dtype == DType::f32) run(float{}, FmaFamily<float>{});
  else if (dtype == DType::bf16) run(__nv_bfloat16{}, FmaFamily<__nv_bfloat16>{});
  else MGL_FAIL("chunk_attention: the CUDA kernels support f32 and bf16, got ", dtype_name(dtype));
}

void chunk_attention_backward(const ChunkAttentionBackwardArgs& args, Stream stream) {
  const AttentionShape& s = args.shape;
  const DType dtype = args.dtype;
  const void *q = args.q, *k = args.k, *v = args.v, *o = args.o, *grad_o = args.grad_o;
  const float* logsumexp = args.logsumexp;
  float* delta = args.delta;
  void *grad_q = args.grad_q, *grad_k = args.grad_k, *grad_v = args.grad_v;
  if (s.batch * s.chunks * s.heads == 0 || s.q_len == 0) return;
  MGL_CHECK(s.dz <= kMaxHeadDim, "chunk_attention: q/k head dim ", s.dz, " exceeds ", kMaxHeadDim);
  auto run = [&](auto tag, auto family) {
    using T = decltype(tag);
    const int64_t rows = s.batch * s.chunks * s.q_len * s.heads;
    delta_kernel<<<blocks_for(rows, kThreads / 32), kThreads, 0, stream>>>(static_cast<const T*>(o),
                                                                           static_cast<const T*>(grad_o), delta, rows, s.dv);
    MGL_CUDA_CHECK_LAUNCH();
    const Inputs<T> in{static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                       static_cast<const T*>(grad_o), logsumexp, delta};
    backward_with<decltype(family)>(in, static_cast<T*>(grad_q), static_cast<T*>(grad_k), static_cast<T*>(grad_v), s,
                                    stream);
  };
  if (tensor_cores_apply(dtype, s, {q, k, v, grad_o, grad_q, grad_k, grad_v})) run(__nv_bfloat16{}, MmaFamily{});
  else if (dtype == DType::f32) run(float{}, FmaFamily<float>{});
  else if (dtype == DType::bf16) run(__nv_bfloat16{}, FmaFamily<__nv_bfloat16>{});
  else MGL_FAIL("chunk_attention: the CUDA kernels support f32 and bf16, got ", dtype_name(dtype));
}

}  // namespace mgl::cuda

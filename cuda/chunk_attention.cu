// Chunk-wise causal attention as GEMMs on tensor cores (cuBLAS through cuda/matmul.h), with two small
// kernels between them, for one head of a group of blocks at a time.
//
// Tiles. A block has q_len queries and k_len keys; query i sees key j iff j <= i + offset, offset =
// k_len - q_len. Its queries are cut into row tiles of T = kTile: tile t holds queries [tT, tT + T)
// (fewer in the last) and sees the key prefix [0, p_t), p_t = min(tT + T + offset, k_len). The causal
// triangle is covered by n = ceil(q_len / T) rectangles, each a GEMM; their parts above the diagonal
// are masked to probability 0, so the GEMMs do n(n+1)/2 · T² of the triangle's n² T² / 2 entries:
// (n + 1) / n of the useful work, 1.125 for c = 2048. Keys are cut into matching column tiles: key
// tile u is [p_{u-1}, p_u) (p_{-1} = 0), so the queries that see any of its keys are exactly
// [uT, q_len), the rows of tiles u .. n-1, all of whose rectangles contain it.
//
// Forward, per row tile t, each step one launch over the group's blocks:
//   S_t = Q_t K[0:p_t]ᵀ                 GEMM, f32 out (the logits are not rounded to bf16)
//   P̃_t, logsumexp                     softmax_kernel: mask, DropKey, dropout; P̃ in the input dtype
//   O_t = P̃_t V[0:p_t]                 GEMM into o
// Backward: D = rowsum(dO ⊙ O) (delta_kernel), then per row tile t
//   S_t = Q_t K[0:p_t]ᵀ,  dP_t = dO_t V[0:p_t]ᵀ     GEMMs, f32 out
//   P̃_t, dS_t = scale · P ⊙ (dP ⊙ M/(1-p) − D)     score_gradient_kernel, into whole-block buffers
//   dQ_t = dS_t K[0:p_t]                            GEMM into dq
// and per key tile u, over the rows [uT, q_len) of the whole-block buffers,
//   dV_u = P̃[uT:, u]ᵀ dO[uT:],   dK_u = dS[uT:, u]ᵀ Q[uT:]     GEMMs into dv and dk.
// Every output row is written by one GEMM that sums over all the keys (or queries) it needs: no
// accumulation across tiles (which in bf16 would round at every tile), no atomics, no extra pass.
//
// Why GEMMs. With dv = 2048 no on-chip accumulator holds an output row: a FlashAttention kernel has to
// split dv into slices and recompute S (and in backward dP) for each, 1.9x the useful work with
// slices of 256 (docs/perf.md's optimisation log). As GEMMs, P and dS go through memory instead,
// which is cheap against the arithmetic: per block of c = 2048 the forward moves ~12 bytes per score
// (f32 S written and read, bf16 P̃ written and read), ~28 MB against 10.3 GFLOP, and the backward
// ~60 MB against 20.4 GFLOP.
// The backward recomputes S from Q, K and the logsumexp (dz / (dz + dv) = 1/9 of the forward's work)
// rather than keeping P across the step, and keeps P̃ and dS of whole blocks so that dV and dK come
// from one GEMM per key tile. The tile size trades masked work, (n + 1) / n, against operand reuse:
// each of the three dv-wide products (P̃ V, dO Vᵀ, P̃ᵀ dO) streams a [p, dv] operand (V or dO) for T
// rows, T FLOPs per byte of bf16, so T = 256 sits near the H100's balance of tensor cores and HBM
// (~650 TFLOP/s that cuBLAS reaches over ~3 TB/s: ~220 FLOPs per byte); T = 512 would be safely
// compute-bound at 1.25x the useful work instead of 1.125x.
//
// Scratch, per block of a group: f32 score tiles [T, ld] (forward S; backward S and dP) and
// probabilities in the input dtype (forward P̃ [T, ld]; backward P̃ and dS of the whole block,
// [q_len, ld]), ld = k_len rounded up to 8 so that every row starts 16-byte aligned. A group is as
// many blocks as kScratchBytes holds (at least one), evened out over the groups: for c = 2048 in bf16,
// 3 MiB per block forward and 20 MiB backward, so a 32K sequence (16 blocks) runs its forward as one
// group and its backward as two groups of 8.
//
// f32 inputs take the same GEMMs in f32 (CUBLAS_COMPUTE_32F, no TF32): the reference precision.
#include <algorithm>
#include <type_traits>

#include "cuda/chunk_attention.h"
#include "cuda/matmul.h"
#include "cuda/packed_load.cuh"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int64_t kTile = 256;                        // queries per row tile
constexpr int64_t kScratchBytes = int64_t(256) << 20;  // workspace a pass aims to stay within
constexpr int64_t kBufferAlign = 256;                  // bytes: each scratch buffer starts on this boundary

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The tiling of a pass and the layout of its workspace: [S][P̃] forward, [S][dP][P̃][dS] backward.
struct Plan {
  int64_t blocks = 0;      // per head: batch * chunks
  int64_t tile_rows = 0;   // rows of a full row tile, min(kTile, q_len)
  int64_t ld = 0;          // row pitch (elements) of every scratch matrix
  int64_t group = 0;       // blocks per group
  int64_t prob_rows = 0;   // rows per block of the probability buffers: tile_rows forward, q_len backward
  int64_t score_bytes = 0;  // one f32 buffer [group, tile_rows, ld]
  int64_t prob_bytes = 0;   // one buffer [group, prob_rows, ld] in the input dtype
  int64_t bytes = 0;        // the whole workspace
};

Plan plan_of(const AttentionShape& s, DType dtype, AttentionPass pass) {
  Plan p;
  p.blocks = s.batch * s.chunks;
  if (p.blocks == 0 || s.heads == 0 || s.q_len == 0) return p;
  const int64_t buffers = pass == AttentionPass::backward ? 2 : 1;  // of each kind
  p.tile_rows = std::min(kTile, s.q_len);
  p.ld = round_up(s.k_len, 8);
  p.prob_rows = pass == AttentionPass::backward ? s.q_len : p.tile_rows;
  const int64_t score_size = sizeof(float), prob_size = dtype_size(dtype);
  const int64_t per_block = buffers * p.ld * (p.tile_rows * score_size + p.prob_rows * prob_size);
  const int64_t groups = ceil_div(p.blocks, std::max<int64_t>(1, kScratchBytes / per_block));
  p.group = ceil_div(p.blocks, groups);
  p.score_bytes = round_up(p.group * p.tile_rows * p.ld * score_size, kBufferAlign);
  p.prob_bytes = round_up(p.group * p.prob_rows * p.ld * prob_size, kBufferAlign);
  p.bytes = buffers * (p.score_bytes + p.prob_bytes);
  return p;
}

// One matrix per block of a group: element (row, col) of block g at data + g * stride + row * ld + col.
template <class T>
struct Matrices {
  T* data = nullptr;
  int64_t ld = 0, stride = 0;
  __host__ __device__ T* row(int64_t g, int64_t r) const { return data + g * stride + r * ld; }
  // The GEMM operand whose element (0, 0) is (r, c), read as stored or transposed.
  GemmOperand operand(int64_t r, int64_t c, bool transposed = false) const {
    return {data + r * ld + c, ld, stride, transposed};
  }
};

template <class T>
Matrices<const T> read_only(const Matrices<T>& m) {
  return {m.data, m.ld, m.stride};
}

// A row tile of a group: rows 0 .. rows - 1 are queries query0 .. of each block, seeing keys 0 .. keys - 1.
struct Tile {
  AttentionShape shape;
  int64_t first = 0, head = 0, count = 0;  // the group: blocks first .. first + count - 1 (of one head)
  int64_t query0 = 0, rows = 0, keys = 0;

  __device__ int64_t block(int64_t g) const { return (first + g) * shape.heads + head; }  // AttentionShape's numbering
};

// The logit scale · S, rounded before anything is subtracted from it (no FMA contraction), so that
// every pass sees the same value: a row with one key gets logsumexp = logit and P = exp(0) = 1
// exactly, and its output is its value bit for bit.
__device__ __forceinline__ float logit(float scale, float score) { return __fmul_rn(scale, score); }

// Threads for a row of `keys` scores taken kPack at a time.
unsigned tile_threads(int64_t keys) { return row_threads(ceil_div(keys, kPack)); }

// Forward: the logsumexp of each row of the tile's logits and its probabilities P̃ = exp(scale S -
// logsumexp) · M/(1-p), 0 outside the softmax (masked, dropped by DropKey, or the pitch's padding).
// One block per row (grid-stride): a pass for the running max and sum (MaxSum), a pass to write.
template <class T>
__global__ void softmax_kernel(Tile tile, Matrices<const float> scores, Matrices<T> probs, float* logsumexp) {
  const AttentionShape& s = tile.shape;
  const float scale = static_cast<float>(s.scale);
  for (int64_t n = blockIdx.x; n < tile.count * tile.rows; n += gridDim.x) {
    const int64_t g = n / tile.rows, r = n % tile.rows, i = tile.query0 + r, block = tile.block(g);
    const float* in = scores.row(g, r);
    MaxSum<float> state{-INFINITY, 0.0f};
    for (int64_t c = threadIdx.x * kPack; c < tile.keys; c += blockDim.x * kPack) {
      float x[kPack];
      load_floats<kPack>(in + c, x);
#pragma unroll
      for (int e = 0; e < kPack; ++e)
        if (in_softmax(s, block, i, c + e)) state = fold(state, logit(scale, x[e]));
    }
    state = block_reduce(state, [](MaxSum<float> a, MaxSum<float> b) { return merge(a, b); });
    const float lse = state.max + logf(state.sum);  // -inf for a row without logits: none is read below
    if (threadIdx.x == 0) logsumexp[query_row(s, block, i)] = lse;
    for (int64_t c = threadIdx.x * kPack; c < tile.keys; c += blockDim.x * kPack) {
      float x[kPack];
      load_floats<kPack>(in + c, x);
#pragma unroll
      for (int e = 0; e < kPack; ++e)
        x[e] = in_softmax(s, block, i, c + e)
                   ? expf(logit(scale, x[e]) - lse) * dropout_factor<float>(s, block, i, c + e)
                   : 0.0f;
      store_pack<true>(probs.row(g, r) + c, x);
    }
  }
}

// Backward: from the tile's logits S and dP = dO Vᵀ, the dropped probabilities P̃ = P · M/(1-p) and
// the logit gradients dS = scale · P ⊙ (dP · M/(1-p) - D), P = exp(scale S - logsumexp), both 0
// outside the softmax, into rows query0 .. of the whole-block buffers. One block per row.
template <class T>
__global__ void score_gradient_kernel(Tile tile, Matrices<const float> scores, Matrices<const float> score_grads,
                                      Matrices<T> probs, Matrices<T> grads, const float* logsumexp,
                                      const float* delta) {
  const AttentionShape& s = tile.shape;
  const float scale = static_cast<float>(s.scale);
  for (int64_t n = blockIdx.x; n < tile.count * tile.rows; n += gridDim.x) {
    const int64_t g = n / tile.rows, r = n % tile.rows, i = tile.query0 + r, block = tile.block(g);
    const int64_t row = query_row(s, block, i);
    const float lse = logsumexp[row], d = delta[row];
    for (int64_t c = threadIdx.x * kPack; c < tile.keys; c += blockDim.x * kPack) {
      float x[kPack], dx[kPack], p[kPack], ds[kPack];
      load_floats<kPack>(scores.row(g, r) + c, x);
      load_floats<kPack>(score_grads.row(g, r) + c, dx);
#pragma unroll
      for (int e = 0; e < kPack; ++e) {
        p[e] = ds[e] = 0.0f;
        if (in_softmax(s, block, i, c + e)) {
          const float prob = expf(logit(scale, x[e]) - lse), factor = dropout_factor<float>(s, block, i, c + e);
          p[e] = prob * factor;
          ds[e] = scale * prob * (dx[e] * factor - d);
        }
      }
      store_pack<true>(probs.row(g, i) + c, p);
      store_pack<true>(grads.row(g, i) + c, ds);
    }
  }
}

// delta[row] = Σ_c dO[row, c] · O[row, c] over the [rows, dv] rows of o and grad_o. One warp per row
// (grid-stride), kPack values per lane and step (16-byte loads when kAligned), the row's tail one by one.
template <class T, bool kAligned>
__global__ void delta_kernel(const T* o, const T* grad_o, float* delta, int64_t rows, int64_t dv) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const T *a = o + row * dv, *b = grad_o + row * dv;
    float sum = 0.0f;
    for (int64_t c = lane * kPack; c < dv; c += 32 * kPack) {
      if (c + kPack <= dv) {
        float x[kPack], y[kPack];
        load_pack<kAligned>(a + c, x);
        load_pack<kAligned>(b + c, y);
#pragma unroll
        for (int e = 0; e < kPack; ++e) sum = fmaf(x[e], y[e], sum);
      } else {
        for (int64_t e = c; e < dv; ++e) sum = fmaf(to_float(a[e]), to_float(b[e]), sum);
      }
    }
    sum = warp_sum(sum);
    if (lane == 0) delta[row] = sum;
  }
}

// ---- the passes --------------------------------------------------------------------------------------

// What the launches of a pass share, and its current group and head.
struct Pass {
  AttentionShape shape;
  DType dtype;
  int device = 0;
  Stream stream = nullptr;
  Plan plan;
  int64_t first = 0, count = 0, head = 0;

  int64_t tiles() const { return ceil_div(shape.q_len, kTile); }
  Tile tile(int64_t t) const {
    Tile tile{shape, first, head, count, t * kTile, std::min(kTile, shape.q_len - t * kTile), 0};
    tile.keys = std::min(tile.query0 + tile.rows + (shape.k_len - shape.q_len), shape.k_len);
    return tile;
  }
  // One head of a [batch, chunks * length, heads, width] tensor for the current group.
  template <class T>
  Matrices<T> side(T* data, int64_t length, int64_t width) const {
    return {data + (first * length * shape.heads + head) * width, shape.heads * width, length * shape.heads * width};
  }
  // C[0:m, 0:n] = op(A) op(B), a sum over k, for every block of the group (f32 C for the logits).
  template <class C>
  void product(int64_t m, int64_t n, int64_t k, const GemmOperand& a, const GemmOperand& b, const Matrices<C>& c,
               int64_t c_row) const {
    if (k == 0) {  // dz or dv = 0: a sum over nothing (only the logits have such products)
      MGL_CUDA_CHECK(cudaMemsetAsync(c.data, 0, plan.score_bytes, stream));
      return;
    }
    gemm({.dtype = dtype, .batch = count, .m = m, .n = n, .k = k, .a = a, .b = b, .c = c.row(0, c_row), .ldc = c.ld,
          .c_batch_stride = c.stride, .f32_output = std::is_same_v<C, float>},
         device, stream);
  }
  // S = Q_t K[0:p_t]ᵀ of the tile for every block of the group, in f32, from the whole q and k.
  template <class T>
  void logits(const Tile& tile, const T* q, const T* k, const Matrices<float>& S) const {
    product(tile.rows, tile.keys, shape.dz, side(q, shape.q_len, shape.dz).operand(tile.query0, 0),
            side(k, shape.k_len, shape.dz).operand(0, 0, true), S, 0);
  }
  // Calls f() for each head and each group of blocks, with head, first and count set.
  template <class F>
  void for_each_group(F&& f) {
    for (head = 0; head < shape.heads; ++head)
      for (first = 0; first < plan.blocks; first += plan.group) {
        count = std::min(plan.group, plan.blocks - first);
        f();
      }
  }
  // Launches kernel over the tile's rows of every block of the group.
  template <class Kernel, class... Args>
  void rows_kernel(Kernel kernel, const Tile& tile, const Args&... args) const {
    kernel<<<row_blocks(tile.count * tile.rows), tile_threads(tile.keys), 0, stream>>>(tile, args...);
    MGL_CUDA_CHECK_LAUNCH();
  }
};

// Pointers into the workspace: buffer `index` of the plan's layout (scores first, then probabilities).
template <class T>
Matrices<T> scratch(void* workspace, const Plan& plan, int64_t score_buffers, int64_t index) {
  char* base = static_cast<char*>(workspace);
  if (index < score_buffers)
    return {reinterpret_cast<T*>(base + index * plan.score_bytes), plan.ld, plan.tile_rows * plan.ld};
  base += score_buffers * plan.score_bytes + (index - score_buffers) * plan.prob_bytes;
  return {reinterpret_cast<T*>(base), plan.ld, plan.prob_rows * plan.ld};
}

template <class T>
void forward_pass(const ChunkAttentionForwardArgs& args, Stream stream) {
  Pass pass{args.shape, args.dtype, args.device, stream, plan_of(args.shape, args.dtype, AttentionPass::forward)};
  const AttentionShape& s = pass.shape;
  const T *q = static_cast<const T*>(args.q), *k = static_cast<const T*>(args.k), *v = static_cast<const T*>(args.v);
  const Matrices<float> S = scratch<float>(args.workspace, pass.plan, 1, 0);
  const Matrices<T> P = scratch<T>(args.workspace, pass.plan, 1, 1);
  pass.for_each_group([&] {
    const auto V = pass.side(v, s.k_len, s.dv);
    const auto O = pass.side(static_cast<T*>(args.o), s.q_len, s.dv);
    for (int64_t t = 0; t < pass.tiles(); ++t) {
      const Tile tile = pass.tile(t);
      pass.logits(tile, q, k, S);
      pass.rows_kernel(softmax_kernel<T>, tile, read_only(S), P, args.logsumexp);
      pass.product(tile.rows, s.dv, tile.keys, P.operand(0, 0), V.operand(0, 0), O, tile.query0);
    }
  });
}

template <class T>
void backward_pass(const ChunkAttentionBackwardArgs& args, Stream stream) {
  Pass pass{args.shape, args.dtype, args.device, stream, plan_of(args.shape, args.dtype, AttentionPass::backward)};
  const AttentionShape& s = pass.shape;
  const T *q = static_cast<const T*>(args.q), *k = static_cast<const T*>(args.k), *v = static_cast<const T*>(args.v);
  const T *o = static_cast<const T*>(args.o), *grad_o = static_cast<const T*>(args.grad_o);
  const int64_t rows = s.batch * s.chunks * s.q_len * s.heads;
  auto delta = [&](auto aligned) {
    delta_kernel<T, decltype(aligned)::value><<<blocks_for(rows, kThreads / 32), kThreads, 0, stream>>>(
        o, grad_o, args.delta, rows, s.dv);
  };
  if (s.dv % kPack == 0 && aligned16(o) && aligned16(grad_o)) delta(std::true_type{});
  else delta(std::false_type{});
  MGL_CUDA_CHECK_LAUNCH();

  const Matrices<float> S = scratch<float>(args.workspace, pass.plan, 2, 0);
  const Matrices<float> dP = scratch<float>(args.workspace, pass.plan, 2, 1);
  const Matrices<T> P = scratch<T>(args.workspace, pass.plan, 2, 2);
  const Matrices<T> dS = scratch<T>(args.workspace, pass.plan, 2, 3);
  pass.for_each_group([&] {
    const auto Q = pass.side(q, s.q_len, s.dz);
    const auto K = pass.side(k, s.k_len, s.dz);
    const auto V = pass.side(v, s.k_len, s.dv);
    const auto dO = pass.side(grad_o, s.q_len, s.dv);
    for (int64_t t = 0; t < pass.tiles(); ++t) {
      const Tile tile = pass.tile(t);
      pass.logits(tile, q, k, S);
      pass.product(tile.rows, tile.keys, s.dv, dO.operand(tile.query0, 0), V.operand(0, 0, true), dP, 0);
      pass.rows_kernel(score_gradient_kernel<T>, tile, read_only(S), read_only(dP), P, dS, args.logsumexp,
                       static_cast<const float*>(args.delta));
      pass.product(tile.rows, s.dz, tile.keys, dS.operand(tile.query0, 0), K.operand(0, 0),
                   pass.side(static_cast<T*>(args.grad_q), s.q_len, s.dz), tile.query0);
    }
    // Key tile u: keys [p_{u-1}, p_u), seen by the queries [uT, q_len).
    const auto dK = pass.side(static_cast<T*>(args.grad_k), s.k_len, s.dz);
    const auto dV = pass.side(static_cast<T*>(args.grad_v), s.k_len, s.dv);
    for (int64_t u = 0, key0 = 0; u < pass.tiles(); key0 = pass.tile(u).keys, ++u) {
      const int64_t keys = pass.tile(u).keys - key0, query0 = u * kTile, queries = s.q_len - query0;
      pass.product(keys, s.dv, queries, P.operand(query0, key0, true), dO.operand(query0, 0), dV, key0);
      pass.product(keys, s.dz, queries, dS.operand(query0, key0, true), Q.operand(query0, 0), dK, key0);
    }
  });
}

template <class F>
void dispatch(DType dtype, F&& f) {
  if (dtype == DType::f32) f(float{});
  else if (dtype == DType::bf16) f(__nv_bfloat16{});
  else MGL_FAIL("chunk_attention: the CUDA path supports f32 and bf16, got ", dtype_name(dtype));
}

void check_workspace(const void* workspace, const AttentionShape& s, DType dtype, AttentionPass pass) {
  MGL_CHECK(plan_of(s, dtype, pass).bytes == 0 || (workspace && aligned16(workspace)),
            "chunk_attention: a 16-byte aligned workspace of chunk_attention_workspace_bytes() is required");
}

}  // namespace

int64_t chunk_attention_workspace_bytes(const AttentionShape& shape, DType dtype, AttentionPass pass) {
  return plan_of(shape, dtype, pass).bytes;
}

void chunk_attention_forward(const ChunkAttentionForwardArgs& args, Stream stream) {
  if (plan_of(args.shape, args.dtype, AttentionPass::forward).bytes == 0) return;
  check_workspace(args.workspace, args.shape, args.dtype, AttentionPass::forward);
  dispatch(args.dtype, [&](auto tag) { forward_pass<decltype(tag)>(args, stream); });
}

void chunk_attention_backward(const ChunkAttentionBackwardArgs& args, Stream stream) {
  if (plan_of(args.shape, args.dtype, AttentionPass::backward).bytes == 0) return;
  check_workspace(args.workspace, args.shape, args.dtype, AttentionPass::backward);
  dispatch(args.dtype, [&](auto tag) { backward_pass<decltype(tag)>(args, stream); });
}

}  // namespace mgl::cuda

// Decoding matrix-vector products; cuda/decode_gemv.h has the math.
//
// Launch: blocks of 4 warps that never synchronise; each warp owns 2 adjacent rows of one problem
// (8 rows per block, so a row pair (2i, 2i + 1) of swiglu_pairs always meets in one warp). The
// blocks of the launch's problems follow each other: problem p owns blocks [first[p], first[p + 1]).
// A lane reads 16 bytes of each of its 2 rows per load (8 bf16 or 4 f32 weights: a warp reads 512
// contiguous bytes per row) and holds a tile of 4 or 8 such loads per row in registers (1024 or 2048
// bf16 columns), so that all of a tile's loads are in flight at once. It multiplies them with the
// matching f32 inputs of up to BT token rows, accumulates in f32, and the warp adds up its lanes
// with shuffles.
//
// The weights are constant, so the first tile is loaded before the kernel waits for its predecessor
// (cuda/dependent_launch.cuh) and the rest of the rows is prefetched into L2: with the overlapped
// launch the weight stream starts while the previous kernel is still running. When an input row is
// normalised, each warp then computes its mean and scale itself (warp reductions over the row, which
// then sits in L1 for the products). With B > BT the warp repeats the product per tile of BT token
// rows (the weights then come from registers when a row fits in one tile, else from L2).
#include <algorithm>
#include <cmath>

#include "cuda/decode_gemv.h"
#include "cuda/dependent_launch.cuh"
#include "cuda/packed_load.cuh"
#include "cuda/row_reduce.cuh"  // warp_sum

namespace mgl::cuda {

namespace {

constexpr int kGemvWarps = 4;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = kGemvWarps * kRowsPerWarp;

struct BlockStarts {
  int64_t first[kMaxGemvProblems + 1];
};

// The warp's rows, columns [tile_begin, tile_begin + 32 TILE VEC): load i of a lane holds columns
// tile_begin + (32 i + lane) VEC ... + VEC - 1 (past the end of the row: not loaded). TILE is 4
// (rows of up to 1024 bf16) or 8: the smaller tile needs half the registers, so more blocks fit.
template <class W, int VEC, int TILE>
__device__ __forceinline__ void load_tile(const W* const* rows, int64_t tile_begin, int64_t cols, int lane,
                                          Packed<W, VEC> (&tile)[kRowsPerWarp][TILE]) {
#pragma unroll
  for (int i = 0; i < TILE; ++i) {
    const int64_t k = tile_begin + (int64_t(i) * 32 + lane) * VEC;
    if (k >= cols) break;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) tile[r][i] = load_packed<W, VEC>(rows[r] + k);
  }
}

__device__ __forceinline__ float silu(float a) { return a / (1.0f + expf(-a)); }

// x̂ = (x - shift) * scale for each token row of the tile (then * (norm_weight + 1) + norm_bias):
// shift = mean (layer) or 0, scale = 1 / sqrt(var + eps) with var the variance (layer) or the mean
// square (rms). Each warp computes them on its own (lanes take VEC-wide slices of the row, from L1 or
// L2, and shuffles add them up): no block-wide synchronisation between the weights and the products.
template <int VEC, int BT>
__device__ __forceinline__ void input_stats(const GemvProblem& P, int64_t b0, int64_t batch, int lane,
                                            float (&shift)[BT], float (&scale)[BT]) {
#pragma unroll
  for (int t = 0; t < BT; ++t) {
    shift[t] = 0.0f, scale[t] = 1.0f;
    if (P.norm == GemvNorm::none || b0 + t >= batch) continue;
    const float* x = P.x + (b0 + t) * P.cols;
    if (P.norm == GemvNorm::layer) {
      float sum = 0.0f;
      for (int64_t k = int64_t(lane) * VEC; k < P.cols; k += 32 * VEC) {
        float v[VEC];
        load_floats<VEC>(x + k, v);
#pragma unroll
        for (int e = 0; e < VEC; ++e) sum += v[e];
      }
      shift[t] = warp_sum(sum) / float(P.cols);
    }
    float squares = 0.0f;
    for (int64_t k = int64_t(lane) * VEC; k < P.cols; k += 32 * VEC) {
      float v[VEC];
      load_floats<VEC>(x + k, v);
#pragma unroll
      for (int e = 0; e < VEC; ++e) squares += (v[e] - shift[t]) * (v[e] - shift[t]);
    }
    scale[t] = 1.0f / sqrtf(warp_sum(squares) / float(P.cols) + P.eps);
  }
}

// y[b, o] = act * row_scale + residual + residual2 for one output.
__device__ __forceinline__ void store_output(const GemvProblem& P, int64_t b, int64_t o, float value) {
  if (P.row_scale) value *= P.row_scale[o];
  if (P.residual) value += P.residual[b * P.residual_ld + o];
  if (P.residual2) value += P.residual2[b * P.residual2_ld + o];
  P.y[b * P.y_ld + o] = value;
}

// The rows of `block` (relative to the problem's first block) for every token row.
template <class W, int VEC, int TILE, int BT>
__device__ __forceinline__ void gemv_block(const GemvProblem& P, int64_t block, int64_t batch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = block * kRowsPerBlock + int64_t(warp) * kRowsPerWarp;
  const W* weight = static_cast<const W*>(P.weight);
  const W* rows[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) rows[r] = weight + min(row0 + r, P.rows - 1) * P.cols;  // a row past the end reads the last
  constexpr int64_t tile_cols = int64_t(TILE) * 32 * VEC;
  const int64_t tiles = (P.cols + tile_cols - 1) / tile_cols;

  // Prologue, before the previous kernel has finished: the first tile into registers, the rest of
  // the rows towards L2.
  Packed<W, VEC> tile[kRowsPerWarp][TILE];
  load_tile<W, VEC, TILE>(rows, 0, P.cols, lane, tile);
  if (tiles > 1) {
    for (int r = 0; r < kRowsPerWarp; ++r)
      prefetch_to_l2(rows[r] + tile_cols, (P.cols - tile_cols) * int64_t(sizeof(W)), lane, 32);
  }
  wait_for_previous_kernel();
  allow_next_kernel();

  for (int64_t b0 = 0; b0 < batch; b0 += BT) {
    if (row0 >= P.rows) return;
    float shift[BT], scale[BT];
    input_stats<VEC, BT>(P, b0, batch, lane, shift, scale);

    float acc[kRowsPerWarp][BT] = {};
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t tile_begin = t * tile_cols;
      if (t > 0 || (b0 > 0 && tiles > 1)) load_tile<W, VEC, TILE>(rows, tile_begin, P.cols, lane, tile);
#pragma unroll
      for (int i = 0; i < TILE; ++i) {
        const int64_t k = tile_begin + (int64_t(i) * 32 + lane) * VEC;
        if (k >= P.cols) break;
        float w[kRowsPerWarp][VEC];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) unpack<W, VEC>(tile[r][i], w[r]);
        float gain[VEC], offset[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) gain[e] = 1.0f, offset[e] = 0.0f;
        if (P.norm_weight) {
          load_floats<VEC>(P.norm_weight + k, gain);
#pragma unroll
          for (int e = 0; e < VEC; ++e) gain[e] += 1.0f;
        }
        if (P.norm_bias) load_floats<VEC>(P.norm_bias + k, offset);
#pragma unroll
        for (int bt = 0; bt < BT; ++bt) {
          if (b0 + bt >= batch) break;
          float x[VEC];
          load_floats<VEC>(P.x + (b0 + bt) * P.cols + k, x);
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            const float xhat = (x[e] - shift[bt]) * scale[bt] * gain[e] + offset[e];
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) acc[r][bt] += w[r][e] * xhat;
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int bt = 0; bt < BT; ++bt)
        for (int mask = 16; mask > 0; mask /= 2) acc[r][bt] += shuffle_xor(acc[r][bt], mask);

    if (lane != 0) continue;
#pragma unroll
    for (int bt = 0; bt < BT; ++bt) {
      const int64_t b = b0 + bt;
      if (b >= batch) break;
      if (P.activation == GemvActivation::swiglu_pairs) {  // rows row0, row0 + 1 = fc1 row i, fc3 row i
        const float gate = acc[0][bt] + (P.bias ? P.bias[row0] : 0.0f);
        const float up = acc[1][bt] + (P.bias ? P.bias[row0 + 1] : 0.0f);
        store_output(P, b, row0 / 2, silu(gate) * up);
        continue;
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t row = row0 + r;
        if (row >= P.rows) break;
        float a = acc[r][bt] + (P.bias ? P.bias[row] : 0.0f);
        if (P.activation == GemvActivation::silu) a = silu(a);
        store_output(P, b, row, a);
      }
    }
  }
}

template <class W, int VEC, int TILE, int BT>
__global__ void __launch_bounds__(kGemvWarps * 32, TILE == 4 ? 6 : 2) gemv_kernel(GemvLaunch launch, BlockStarts starts) {
  // Constant indices into the parameter struct (a dynamic index would copy it to local memory).
  const int64_t block = blockIdx.x;
  const int64_t* first = starts.first;
  if (block < first[1]) gemv_block<W, VEC, TILE, BT>(launch.problems[0], block - first[0], launch.batch);
  else if (block < first[2]) gemv_block<W, VEC, TILE, BT>(launch.problems[1], block - first[1], launch.batch);
  else if (block < first[3]) gemv_block<W, VEC, TILE, BT>(launch.problems[2], block - first[2], launch.batch);
  else gemv_block<W, VEC, TILE, BT>(launch.problems[3], block - first[3], launch.batch);
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class W, int VEC, int TILE>
void run(const GemvLaunch& launch, const BlockStarts& starts, Stream stream) {
  const unsigned blocks = unsigned(starts.first[kMaxGemvProblems]);
  constexpr unsigned threads = kGemvWarps * 32;
  if (launch.batch == 1) launch_overlapped(gemv_kernel<W, VEC, TILE, 1>, blocks, threads, 0, stream, launch, starts);
  else if (launch.batch == 2) launch_overlapped(gemv_kernel<W, VEC, TILE, 2>, blocks, threads, 0, stream, launch, starts);
  else launch_overlapped(gemv_kernel<W, VEC, TILE, 4>, blocks, threads, 0, stream, launch, starts);
}

template <class W, int VEC>
void dispatch_tile(const GemvLaunch& launch, const BlockStarts& starts, Stream stream) {
  int64_t widest = 0;
  for (int p = 0; p < launch.count; ++p) widest = std::max(widest, launch.problems[p].cols);
  if (widest <= 4 * 32 * VEC) run<W, VEC, 4>(launch, starts, stream);
  else run<W, VEC, 8>(launch, starts, stream);
}

template <class W>
void dispatch_vector_width(const GemvLaunch& launch, const BlockStarts& starts, Stream stream) {
  constexpr int kVec = kPackedWidth<W>;
  bool vector = true;
  for (int p = 0; p < launch.count; ++p) {
    const GemvProblem& P = launch.problems[p];
    vector = vector && P.cols % kVec == 0 && aligned16(P.weight) && aligned16(P.x) && aligned16(P.norm_weight) &&
             aligned16(P.norm_bias);
  }
  if (vector) dispatch_tile<W, kVec>(launch, starts, stream);
  else dispatch_tile<W, 1>(launch, starts, stream);
}

}  // namespace

void decode_gemv(const GemvLaunch& launch, Stream stream) {
  MGL_CHECK(launch.count >= 1 && launch.count <= kMaxGemvProblems, "decode_gemv: ", launch.count,
            " problems (1 to ", kMaxGemvProblems, " per launch)");
  MGL_CHECK(launch.batch >= 1, "decode_gemv: batch ", launch.batch);
  BlockStarts starts{};
  for (int p = 0; p < kMaxGemvProblems; ++p) {
    int64_t blocks = 0;
    if (p < launch.count) {
      const GemvProblem& P = launch.problems[p];
      MGL_CHECK(P.weight && P.x && P.y && P.rows > 0 && P.cols > 0, "decode_gemv: problem ", p,
                " lacks a weight, input or output, or is empty (", P.rows, " x ", P.cols, ")");
      MGL_CHECK(P.activation != GemvActivation::swiglu_pairs || P.rows % 2 == 0, "decode_gemv: problem ", p,
                " pairs its rows but has ", P.rows);
      MGL_CHECK(P.norm == GemvNorm::layer || P.norm_bias == nullptr, "decode_gemv: problem ", p,
                " has a norm bias without LayerNorm");
      blocks = (P.rows + kRowsPerBlock - 1) / kRowsPerBlock;
    }
    starts.first[p + 1] = starts.first[p] + blocks;
  }
  switch (launch.dtype) {
    case DType::f32: dispatch_vector_width<float>(launch, starts, stream); break;
    case DType::bf16: dispatch_vector_width<__nv_bfloat16>(launch, starts, stream); break;
    default: MGL_FAIL("decode_gemv: weights are f32 or bf16, got ", dtype_name(launch.dtype));
  }
}

}  // namespace mgl::cuda

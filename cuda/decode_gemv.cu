// Decoding matrix-vector products; cuda/decode_gemv.h has the math.
//
// Launch: blocks of 8 warps; each warp owns 2 adjacent rows of one problem (16 rows per block, so a
// row pair (2i, 2i + 1) of swiglu_pairs always meets in one warp). The blocks of the launch's problems
// follow each other: problem p owns blocks [first[p], first[p + 1]). A lane reads 16 bytes of each
// of its 2 rows per iteration (8 bf16 or 4 f32 weights: a warp reads 512 contiguous bytes per row)
// and the matching f32 inputs of up to BT token rows, accumulates in f32, and the warp adds up its
// lanes with shuffles. When an input row is normalised, the whole block first computes its mean and
// scale (block reductions over the row, which then sits in L1/L2 for the products). With B > BT the
// block repeats the product per tile of BT token rows (the weights then come from L2).
#include <cmath>

#include "cuda/decode_gemv.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int kGemvWarps = 8;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = kGemvWarps * kRowsPerWarp;

struct BlockStarts {
  int64_t first[kMaxGemvProblems + 1];
};

// ---- loads of VEC consecutive values into f32 registers (16-byte loads when VEC > 1) --------------

template <int VEC>
__device__ __forceinline__ void load_floats(const float* p, float (&out)[VEC]) {
  if constexpr (VEC == 1) {
    out[0] = *p;
  } else {
#pragma unroll
    for (int i = 0; i < VEC; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      out[i] = v.x, out[i + 1] = v.y, out[i + 2] = v.z, out[i + 3] = v.w;
    }
  }
}

// Weights are read once per step: through the read-only path.
template <class W, int VEC>
__device__ __forceinline__ void load_weights(const W* p, float (&out)[VEC]) {
  if constexpr (VEC == 1) {
    out[0] = to_float(*p);
  } else if constexpr (std::is_same_v<W, float>) {
    static_assert(VEC == 4, "f32 weights: 4 per 16-byte load");
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    static_assert(VEC == 8, "bf16 weights: 8 per 16-byte load");
    // A bf16 is the upper half of an f32: each 32-bit word holds weights 2i (low half, little-endian)
    // and 2i + 1 (high half), widened by moving them to the top. (No pointer casts of the loaded
    // registers: those would break the compiler's aliasing rules.)
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
}

__device__ __forceinline__ float silu(float a) { return a / (1.0f + expf(-a)); }

// x̂ = (x - shift) * scale for each token row of the tile (then * (norm_weight + 1) + norm_bias):
// shift = mean (layer) or 0, scale = 1 / sqrt(var + eps) with var the variance (layer) or the mean
// square (rms). Every thread of the block calls this (block reductions).
template <int BT>
__device__ __forceinline__ void input_stats(const GemvProblem& P, int64_t b0, int64_t batch, float (&shift)[BT],
                                            float (&scale)[BT]) {
  const auto plus = [](float l, float r) { return l + r; };
#pragma unroll
  for (int t = 0; t < BT; ++t) {
    shift[t] = 0.0f, scale[t] = 1.0f;
    if (P.norm == GemvNorm::none || b0 + t >= batch) continue;  // uniform over the block
    const float* x = P.x + (b0 + t) * P.cols;
    if (P.norm == GemvNorm::layer) {
      float sum = 0.0f;
      for (int64_t k = threadIdx.x; k < P.cols; k += blockDim.x) sum += x[k];
      shift[t] = block_reduce(sum, plus) / float(P.cols);
    }
    float squares = 0.0f;
    for (int64_t k = threadIdx.x; k < P.cols; k += blockDim.x) squares += (x[k] - shift[t]) * (x[k] - shift[t]);
    scale[t] = 1.0f / sqrtf(block_reduce(squares, plus) / float(P.cols) + P.eps);
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
template <class W, int VEC, int BT>
__device__ __forceinline__ void gemv_block(const GemvProblem& P, int64_t block, int64_t batch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row0 = block * kRowsPerBlock + int64_t(warp) * kRowsPerWarp;
  const W* weight = static_cast<const W*>(P.weight);
  const W* rows[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) rows[r] = weight + min(row0 + r, P.rows - 1) * P.cols;  // a row past the end reads the last

  for (int64_t b0 = 0; b0 < batch; b0 += BT) {
    float shift[BT], scale[BT];
    input_stats<BT>(P, b0, batch, shift, scale);
    if (row0 >= P.rows) continue;  // (not return: the next tile's input_stats needs every thread)

    float acc[kRowsPerWarp][BT] = {};
#pragma unroll 4
    for (int64_t k = int64_t(lane) * VEC; k < P.cols; k += 32 * VEC) {
      float w[kRowsPerWarp][VEC];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) load_weights<W, VEC>(rows[r] + k, w[r]);
      float gain[VEC], offset[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) gain[i] = 1.0f, offset[i] = 0.0f;
      if (P.norm_weight) {
        load_floats<VEC>(P.norm_weight + k, gain);
#pragma unroll
        for (int i = 0; i < VEC; ++i) gain[i] += 1.0f;
      }
      if (P.norm_bias) load_floats<VEC>(P.norm_bias + k, offset);
#pragma unroll
      for (int t = 0; t < BT; ++t) {
        if (b0 + t >= batch) break;
        float x[VEC];
        load_floats<VEC>(P.x + (b0 + t) * P.cols + k, x);
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          const float xhat = (x[i] - shift[t]) * scale[t] * gain[i] + offset[i];
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] += w[r][i] * xhat;
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int t = 0; t < BT; ++t)
        for (int mask = 16; mask > 0; mask /= 2) acc[r][t] += shuffle_xor(acc[r][t], mask);

    if (lane != 0) continue;
#pragma unroll
    for (int t = 0; t < BT; ++t) {
      const int64_t b = b0 + t;
      if (b >= batch) break;
      if (P.activation == GemvActivation::swiglu_pairs) {  // rows row0, row0 + 1 = fc1 row i, fc3 row i
        const float gate = acc[0][t] + (P.bias ? P.bias[row0] : 0.0f);
        const float up = acc[1][t] + (P.bias ? P.bias[row0 + 1] : 0.0f);
        store_output(P, b, row0 / 2, silu(gate) * up);
        continue;
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t row = row0 + r;
        if (row >= P.rows) break;
        float a = acc[r][t] + (P.bias ? P.bias[row] : 0.0f);
        if (P.activation == GemvActivation::silu) a = silu(a);
        store_output(P, b, row, a);
      }
    }
  }
}

template <class W, int VEC, int BT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_kernel(GemvLaunch launch, BlockStarts starts) {
  // Constant indices into the parameter struct (a dynamic index would copy it to local memory).
  const int64_t block = blockIdx.x;
  const int64_t* first = starts.first;
  if (block < first[1]) gemv_block<W, VEC, BT>(launch.problems[0], block - first[0], launch.batch);
  else if (block < first[2]) gemv_block<W, VEC, BT>(launch.problems[1], block - first[1], launch.batch);
  else if (block < first[3]) gemv_block<W, VEC, BT>(launch.problems[2], block - first[2], launch.batch);
  else gemv_block<W, VEC, BT>(launch.problems[3], block - first[3], launch.batch);
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class W, int VEC>
void run(const GemvLaunch& launch, const BlockStarts& starts, Stream stream) {
  const unsigned blocks = unsigned(starts.first[kMaxGemvProblems]);
  constexpr unsigned threads = kGemvWarps * 32;
  if (launch.batch == 1) gemv_kernel<W, VEC, 1><<<blocks, threads, 0, stream>>>(launch, starts);
  else if (launch.batch == 2) gemv_kernel<W, VEC, 2><<<blocks, threads, 0, stream>>>(launch, starts);
  else gemv_kernel<W, VEC, 4><<<blocks, threads, 0, stream>>>(launch, starts);
  MGL_CUDA_CHECK_LAUNCH();
}

template <class W>
void dispatch_vector_width(const GemvLaunch& launch, const BlockStarts& starts, Stream stream) {
  constexpr int kVec = 16 / int(sizeof(W));
  bool vector = true;
  for (int p = 0; p < launch.count; ++p) {
    const GemvProblem& P = launch.problems[p];
    vector = vector && P.cols % kVec == 0 && aligned16(P.weight) && aligned16(P.x) && aligned16(P.norm_weight) &&
             aligned16(P.norm_bias);
  }
  if (vector) run<W, kVec>(launch, starts, stream);
  else run<W, 1>(launch, starts, stream);
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

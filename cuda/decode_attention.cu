// Decoding attention over the current partial chunk; cuda/decode_attention.h has the math.
#include <cmath>

#include "cuda/decode_attention.h"
#include "cuda/rope.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int kScoreWarps = 8;
constexpr int kKeysPerWarp = 8;
constexpr int64_t kKeysPerScoreBlock = kScoreWarps * kKeysPerWarp;
constexpr int kValueThreads = 256;  // value channels per block of the weighted sum

// Row (token j, head h) of sequence b in a [B, c, H, width] cache.
__device__ __forceinline__ int64_t cache_row(const DecodeAttentionArgs& a, int64_t b, int64_t j, int64_t h) {
  return (b * a.chunk_size + j) * a.heads + h;
}

// 1. Scores. Launch: grid (c / 64 key blocks, H, B), 8 warps. Every live block forms q (the block
// that holds key m also forms k and appends k and v to the cache) in shared memory, then writes
// s_j = q · keys[j] for its 64 keys j <= m.
template <class T>
__global__ void __launch_bounds__(kScoreWarps * 32) scores_kernel(DecodeAttentionArgs a) {
  extern __shared__ float q[];  // [dz]
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t m = *a.position;
  const int64_t j0 = blockIdx.x * kKeysPerScoreBlock;
  if (j0 > m) return;  // the whole block: no key of it is visible yet
  const int64_t Z = a.heads * a.dz;
  const float* z = a.z + b * a.z_ld + h * a.dz;
  const auto plus = [](float l, float r) { return l + r; };

  float squares = 0.0f;
  for (int64_t d = threadIdx.x; d < a.dz; d += blockDim.x) squares += z[d] * z[d];
  const float rz = 1.0f / sqrtf(block_reduce(squares, plus) / float(a.dz) + a.eps);

  T* keys = static_cast<T*>(a.keys);
  const bool owns_new_key = m < j0 + kKeysPerScoreBlock;
  for (int64_t i = threadIdx.x; i < a.dz / 2; i += blockDim.x) {
    const float theta = rope_frequency<float>(i, a.dz, a.rope_base);
    float sine, cosine;
    sincosf(float(m) * theta, &sine, &cosine);
    const int64_t c = h * a.dz + 2 * i;  // channel of the pair's first value in [0, Z)
    const float z0 = z[2 * i] * rz, z1 = z[2 * i + 1] * rz;
    for (int row = 0; row < (owns_new_key ? 2 : 1); ++row) {  // row 0: the query, row 1: the key
      const float x0 = z0 * a.qk_scale[row * Z + c] + a.qk_offset[row * Z + c];
      const float x1 = z1 * a.qk_scale[row * Z + c + 1] + a.qk_offset[row * Z + c + 1];
      const float y0 = x0 * cosine - x1 * sine, y1 = x0 * sine + x1 * cosine;
      if (row == 0) {
        q[2 * i] = y0, q[2 * i + 1] = y1;
      } else {
        T* k = keys + cache_row(a, b, m, h) * a.dz + 2 * i;
        k[0] = from_float<T>(y0), k[1] = from_float<T>(y1);
      }
    }
  }
  if (owns_new_key) {
    T* values = static_cast<T*>(a.values) + cache_row(a, b, m, h) * a.dv;
    const float* v = a.v + b * a.v_ld + h * a.dv;
    for (int64_t e = threadIdx.x; e < a.dv; e += blockDim.x) values[e] = from_float<T>(v[e]);
  }
  __syncthreads();  // q, and the new key (a global write) are visible to the whole block

  // Warp w takes keys j0 + w + 8i, i < 8; a lane reads element d of all eight keys before it adds, so
  // eight loads are in flight at once.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float dot[kKeysPerWarp] = {};
  for (int64_t d = lane; d < a.dz; d += 32) {
#pragma unroll
    for (int i = 0; i < kKeysPerWarp; ++i) {
      const int64_t j = j0 + warp + int64_t(i) * kScoreWarps;
      if (j <= m) dot[i] += q[d] * to_float(keys[cache_row(a, b, j, h) * a.dz + d]);
    }
  }
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    for (int mask = 16; mask > 0; mask /= 2) dot[i] += shuffle_xor(dot[i], mask);
    const int64_t j = j0 + warp + int64_t(i) * kScoreWarps;
    if (lane == 0 && j <= m) a.scores[(b * a.heads + h) * a.chunk_size + j] = dot[i];
  }
}

// 2. Weighted sum of values over one split of 64 keys. Launch: grid (dv / 256, splits, B * H),
// 256 threads. Every live block computes the softmax statistics (max, sum of exponentials) of the
// row's m + 1 scores itself (at most c floats, read from L2) instead of waiting for another kernel,
// turns its split's scores into probabilities in shared memory, and each thread sums one value
// channel over the split's keys (a warp reads 32 adjacent channels of a key: coalesced).
template <class T>
__global__ void __launch_bounds__(kValueThreads) values_kernel(DecodeAttentionArgs a) {
  __shared__ float p[kDecodeKeysPerSplit];
  const int64_t split = blockIdx.y, bh = blockIdx.z, b = bh / a.heads, h = bh % a.heads;
  const int64_t m = *a.position;
  const int64_t j_begin = split * kDecodeKeysPerSplit;
  if (j_begin > m) return;
  const int64_t j_end = min(j_begin + kDecodeKeysPerSplit, m + 1);
  const float* s = a.scores + bh * a.chunk_size;

  MaxSum<float> stats{-INFINITY, 0.0f};
  for (int64_t j = threadIdx.x; j <= m; j += blockDim.x) stats = fold(stats, s[j]);
  stats = block_reduce(stats, [](MaxSum<float> l, MaxSum<float> r) { return merge(l, r); });
  for (int64_t j = j_begin + threadIdx.x; j < j_end; j += blockDim.x) p[j - j_begin] = expf(s[j] - stats.max) / stats.sum;
  __syncthreads();

  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= a.dv) return;
  const T* values = static_cast<const T*>(a.values) + cache_row(a, b, 0, h) * a.dv + e;
  const int64_t key_stride = a.heads * a.dv;
  float acc = 0.0f;
#pragma unroll 8
  for (int64_t j = j_begin; j < j_end; ++j) acc += p[j - j_begin] * to_float(values[j * key_stride]);
  a.partial[((split * a.batch + b) * a.heads + h) * a.dv + e] = acc;
}

// 3. out = (sum of the live splits) ⊙ gate. Launch: one thread per (b, channel of H * dv).
__global__ void combine_kernel(DecodeAttentionArgs a) {
  const int64_t V = a.heads * a.dv;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= a.batch * V) return;
  const int64_t b = i / V, e = i % V, h = e / a.dv, d = e % a.dv;
  const int64_t splits = *a.position / kDecodeKeysPerSplit + 1;
  float o = 0.0f;
  for (int64_t split = 0; split < splits; ++split) o += a.partial[((split * a.batch + b) * a.heads + h) * a.dv + d];
  a.out[b * V + e] = o * a.gate[b * a.gate_ld + e];
}

template <class T>
void launch(const DecodeAttentionArgs& a, Stream stream) {
  const dim3 score_grid(unsigned((a.chunk_size + kKeysPerScoreBlock - 1) / kKeysPerScoreBlock), unsigned(a.heads),
                        unsigned(a.batch));
  scores_kernel<T><<<score_grid, kScoreWarps * 32, a.dz * sizeof(float), stream>>>(a);
  MGL_CUDA_CHECK_LAUNCH();
  const dim3 value_grid(unsigned((a.dv + kValueThreads - 1) / kValueThreads), unsigned(decode_attention_splits(a.chunk_size)),
                        unsigned(a.batch * a.heads));
  values_kernel<T><<<value_grid, kValueThreads, 0, stream>>>(a);
  MGL_CUDA_CHECK_LAUNCH();
  combine_kernel<<<blocks_for(a.batch * a.heads * a.dv), kThreads, 0, stream>>>(a);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void decode_attention(const DecodeAttentionArgs& a, Stream stream) {
  MGL_CHECK(a.batch > 0 && a.heads > 0 && a.dz > 0 && a.dz % 2 == 0 && a.dv > 0 && a.chunk_size > 0,
            "decode_attention: bad sizes (batch ", a.batch, ", heads ", a.heads, ", dz ", a.dz, ", dv ", a.dv,
            ", chunk ", a.chunk_size, ")");
  switch (a.dtype) {
    case DType::f32: launch<float>(a, stream); break;
    case DType::bf16: launch<__nv_bfloat16>(a, stream); break;
    default: MGL_FAIL("decode_attention: caches are f32 or bf16, got ", dtype_name(a.dtype));
  }
}

}  // namespace mgl::cuda

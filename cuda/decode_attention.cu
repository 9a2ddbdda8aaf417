// Decoding attention over the current partial chunk; cuda/decode_attention.h has the math.
//
// Launch: grid (splits, channel groups, B * H), 8 warps. Block (s, g, bh) owns keys j0 .. j0 + 63
// (j0 = 64 s) and value channels c0 .. c0 + 255 (c0 = 256 g) of sequence b, head h.
//  - Prologue (cuda/dependent_launch.cuh): the block's cached keys and values, written by earlier
//    steps, are loaded into registers (the constants of q and k prefetched into L2) while the
//    projections before this kernel finish.
//  - q, and in the split holding m the new key k and value v, in shared memory. The new key and
//    value are rounded to the cache's dtype first, as every later step will read them.
//  - Scores: warp w takes keys j0 + w + 8i (i < 8); a lane reads VEC dims of each of its 8 keys per
//    load, so 8 loads are in flight at once, and the warp adds up its lanes with shuffles.
//  - Weighted values: each warp recomputes its split's max and sum of exponentials from the 64 scores
//    in shared memory, then sums p_j v_j over its 8 keys for the group's 256 channels (a lane holds 8
//    channels); the 8 warps' sums meet in shared memory.
//  - With one live split (m < 64) the block writes out = gate ⊙ O itself. Otherwise it stores its
//    partial sum and (max, sum), then counts itself in `arrivals`; the last block of its (group, bh)
//    merges the live splits and writes out = gate ⊙ O, then resets the count.
#include <cmath>

#include "cuda/decode_attention.h"
#include "cuda/dependent_launch.cuh"
#include "cuda/packed_load.cuh"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kThreadsPerBlock = kWarps * 32;
constexpr int kKeysPerWarp = int(kDecodeKeysPerSplit) / kWarps;
constexpr int kChannelsPerLane = int(kDecodeChannelsPerGroup) / 32;

// Row (token j, head h) of sequence b in a [B, c, H, width] cache.
__device__ __forceinline__ int64_t cache_row(const DecodeAttentionArgs& a, int64_t b, int64_t j, int64_t h) {
  return (b * a.chunk_size + j) * a.heads + h;
}

// Shared memory of a block: q [dz], the new key [dz], the new value [256], the split's scores [64],
// the warps' weighted sums [8, 256], the merge weights of the splits [splits].
inline size_t shared_floats(const DecodeAttentionArgs& a) {
  return size_t(2 * a.dz + kDecodeChannelsPerGroup + kDecodeKeysPerSplit + kWarps * kDecodeChannelsPerGroup +
                decode_attention_splits(a.chunk_size));
}

template <class T, int VEC>
__global__ void __launch_bounds__(kThreadsPerBlock) attention_kernel(DecodeAttentionArgs a) {
  constexpr int kValueLoads = kChannelsPerLane / VEC;
  extern __shared__ float shared[];
  float* q = shared;                                              // [dz]
  float* k_new = q + a.dz;                                        // [dz]
  float* v_new = k_new + a.dz;                                    // [256]
  float* scores = v_new + kDecodeChannelsPerGroup;                // [64]
  float* sums = scores + kDecodeKeysPerSplit;                     // [8, 256]
  float* split_weight = sums + kWarps * kDecodeChannelsPerGroup;  // [splits]
  __shared__ bool last_block;

  const int64_t split = blockIdx.x, group = blockIdx.y, bh = blockIdx.z;
  const int64_t b = bh / a.heads, h = bh % a.heads, groups = gridDim.y, BH = gridDim.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // m was written by the previous step's last kernel, which has completed (see dependent_launch.cuh).
  const int64_t m = *a.position;
  const int64_t j0 = split * kDecodeKeysPerSplit;
  if (j0 > m) return;  // the whole block: no key of it is visible yet
  const int64_t j_end = min(j0 + kDecodeKeysPerSplit, m + 1);
  const int64_t c0 = group * kDecodeChannelsPerGroup;
  const int64_t channels = min(kDecodeChannelsPerGroup, a.dv - c0);
  T* keys = static_cast<T*>(a.keys);
  T* values = static_cast<T*>(a.values);
  auto key_of = [&](int i) { return j0 + warp + int64_t(i) * kWarps; };  // warp's key i

  // Prologue: the cached keys (their first VEC dims per lane) and values (the lane's channels) of
  // the warp's keys j < m, written by earlier steps, into registers; the q/k constants towards L2.
  Packed<T, VEC> key_raw[kKeysPerWarp];
  Packed<T, VEC> value_raw[kKeysPerWarp][kValueLoads];
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    if (key_of(i) >= m) continue;
    const int64_t row = cache_row(a, b, key_of(i), h);
    if (lane * VEC < a.dz) key_raw[i] = load_packed<T, VEC>(keys + row * a.dz + lane * VEC);
#pragma unroll
    for (int l = 0; l < kValueLoads; ++l) {
      const int64_t e = (int64_t(l) * 32 + lane) * VEC;
      if (e < channels) value_raw[i][l] = load_packed<T, VEC>(values + row * a.dv + c0 + e);
    }
  }
  const int64_t Z = a.heads * a.dz;
  if (warp == 0) {
    prefetch_to_l2(a.qk_scale + h * a.dz, a.dz * int64_t(sizeof(float)));
    prefetch_to_l2(a.qk_scale + Z + h * a.dz, a.dz * int64_t(sizeof(float)));
    prefetch_to_l2(a.qk_offset + h * a.dz, a.dz * int64_t(sizeof(float)));
    prefetch_to_l2(a.qk_offset + Z + h * a.dz, a.dz * int64_t(sizeof(float)));
  }
  wait_for_previous_kernel();
  allow_next_kernel();

  // q = RoPE_m(ẑ ⊙ qk_scale[0] + qk_offset[0]); in the split that holds m also k (and v), rounded.
  // Every warp computes the RMS of z itself (no block reduction).
  const float* z = a.z + b * a.z_ld + h * a.dz;
  float squares = 0.0f;
  for (int64_t d = lane; d < a.dz; d += 32) squares += z[d] * z[d];
  const float rz = 1.0f / sqrtf(warp_sum(squares) / float(a.dz) + a.eps);
  const bool holds_new = m < j0 + kDecodeKeysPerSplit;
  for (int64_t i = threadIdx.x; i < a.dz / 2; i += blockDim.x) {
    float sine, cosine;
    sincosf(float(m) * a.rope_frequencies[i], &sine, &cosine);
    const int64_t c = h * a.dz + 2 * i;  // channel of the pair's first value in [0, Z)
    const float z0 = z[2 * i] * rz, z1 = z[2 * i + 1] * rz;
    for (int row = 0; row < (holds_new ? 2 : 1); ++row) {  // row 0: the query, row 1: the key
      const float x0 = z0 * a.qk_scale[row * Z + c] + a.qk_offset[row * Z + c];
      const float x1 = z1 * a.qk_scale[row * Z + c + 1] + a.qk_offset[row * Z + c + 1];
      const float y0 = x0 * cosine - x1 * sine, y1 = x0 * sine + x1 * cosine;
      if (row == 0) {
        q[2 * i] = y0, q[2 * i + 1] = y1;
        continue;
      }
      const T k0 = from_float<T>(y0), k1 = from_float<T>(y1);
      k_new[2 * i] = to_float(k0), k_new[2 * i + 1] = to_float(k1);
      if (group == 0) {
        T* k = keys + cache_row(a, b, m, h) * a.dz + 2 * i;
        k[0] = k0, k[1] = k1;
      }
    }
  }
  if (holds_new) {
    const float* v = a.v + b * a.v_ld + h * a.dv + c0;
    T* cached_v = values + cache_row(a, b, m, h) * a.dv + c0;
    for (int64_t e = threadIdx.x; e < channels; e += blockDim.x) {
      const T rounded = from_float<T>(v[e]);
      cached_v[e] = rounded;
      v_new[e] = to_float(rounded);
    }
  }
  __syncthreads();

  // Scores s_j = q · k_j of the warp's keys (key m from shared memory, the others from the cache:
  // the first VEC dims per lane are already in registers).
  float dot[kKeysPerWarp] = {};
  for (int64_t d = int64_t(lane) * VEC; d < a.dz; d += 32 * VEC) {
    if (d != int64_t(lane) * VEC) {
#pragma unroll
      for (int i = 0; i < kKeysPerWarp; ++i)
        if (key_of(i) < m) key_raw[i] = load_packed<T, VEC>(keys + cache_row(a, b, key_of(i), h) * a.dz + d);
    }
#pragma unroll
    for (int i = 0; i < kKeysPerWarp; ++i) {
      float key[VEC];
      if (key_of(i) < m) unpack<T, VEC>(key_raw[i], key);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        if (key_of(i) == m) key[e] = k_new[d + e];
        if (key_of(i) <= m) dot[i] += q[d + e] * key[e];
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    const float s = warp_sum(dot[i]);
    if (lane == 0) scores[warp + i * kWarps] = key_of(i) < j_end ? s : -INFINITY;
  }
  __syncthreads();

  // The split's softmax statistics (every warp computes the same, from shared memory), then warp w's
  // sum over its keys of exp(s_j - max) v_j for the group's channels: lane holds channels
  // c0 + (32 l + lane) VEC + x of load l.
  MaxSum<float> stats{-INFINITY, 0.0f};
  for (int i = lane; i < kDecodeKeysPerSplit; i += 32) stats = fold(stats, scores[i]);
  stats = warp_reduce(stats, [](MaxSum<float> l, MaxSum<float> r) { return merge(l, r); });
  float acc[kChannelsPerLane] = {};
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    if (key_of(i) > m) continue;
    const float p = expf(scores[warp + i * kWarps] - stats.max);
#pragma unroll
    for (int l = 0; l < kValueLoads; ++l) {
      const int64_t e = (int64_t(l) * 32 + lane) * VEC;
      if (e >= channels) continue;
      float v[VEC];
      if (key_of(i) < m) unpack<T, VEC>(value_raw[i][l], v);
#pragma unroll
      for (int x = 0; x < VEC; ++x) acc[l * VEC + x] += p * (key_of(i) == m ? v_new[e + x] : v[x]);
    }
  }
#pragma unroll
  for (int l = 0; l < kValueLoads; ++l)
#pragma unroll
    for (int x = 0; x < VEC; ++x) sums[warp * kDecodeChannelsPerGroup + (l * 32 + lane) * VEC + x] = acc[l * VEC + x];
  __syncthreads();

  const int64_t live_splits = m / kDecodeKeysPerSplit + 1;
  const float* gate = a.gate + b * a.gate_ld + h * a.dv + c0;
  float* out = a.out + b * a.heads * a.dv + h * a.dv + c0;
  auto block_sum = [&](int64_t e) {  // the 8 warps' sums of channel e
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += sums[w * kDecodeChannelsPerGroup + e];
    return o;
  };
  if (live_splits == 1) {  // the only split: normalise and gate directly
    for (int64_t e = threadIdx.x; e < channels; e += blockDim.x) out[e] = block_sum(e) / stats.sum * gate[e];
    return;
  }
  float* partial = a.partial + (split * BH + bh) * a.dv + c0;
  for (int64_t e = threadIdx.x; e < channels; e += blockDim.x) partial[e] = block_sum(e);
  auto stats_of = [&](int64_t s) { return a.split_stats + ((s * BH + bh) * groups + group) * 2; };
  if (threadIdx.x == 0) stats_of(split)[0] = stats.max, stats_of(split)[1] = stats.sum;

  // Count the block in; the last one of (group, bh) merges. The barrier orders the block's stores
  // before thread 0's fence, which makes them visible to the merging block before the count is.
  __syncthreads();
  int32_t* arrivals = a.arrivals + bh * groups + group;
  if (threadIdx.x == 0) {
    __threadfence();
    last_block = atomicAdd(arrivals, 1) == int32_t(live_splits - 1);
    if (last_block) __threadfence();
  }
  __syncthreads();
  if (!last_block) return;

  // M and L over the live splits (one online-softmax merge of the splits' (max, sum) pairs), then the
  // splits' merge weights e^(max_s - M) / L; the reads bypass L1, which may hold stale lines.
  if (warp == 0) {
    MaxSum<float> total{-INFINITY, 0.0f};
    for (int64_t s = lane; s < live_splits; s += 32) {
      const MaxSum<float> part{__ldcg(stats_of(s)), __ldcg(stats_of(s) + 1)};
      split_weight[s] = part.max;
      total = merge(total, part);
    }
    total = warp_reduce(total, [](MaxSum<float> l, MaxSum<float> r) { return merge(l, r); });
    for (int64_t s = lane; s < live_splits; s += 32) split_weight[s] = expf(split_weight[s] - total.max) / total.sum;
  }
  __syncthreads();
  // out = gate ⊙ sum_s weight_s partial_s, in split order; 8 splits' loads in flight at a time.
  for (int64_t e = threadIdx.x; e < channels; e += blockDim.x) {
    const float* column = a.partial + bh * a.dv + c0 + e;  // split s at column[s * BH * dv]
    float o = 0.0f;
    int64_t s = 0;
    for (; s + 8 <= live_splits; s += 8) {
      float part[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) part[u] = __ldcg(column + (s + u) * BH * a.dv);
#pragma unroll
      for (int u = 0; u < 8; ++u) o += split_weight[s + u] * part[u];
    }
    for (; s < live_splits; ++s) o += split_weight[s] * __ldcg(column + s * BH * a.dv);
    out[e] = o * gate[e];
  }
  if (threadIdx.x == 0) *arrivals = 0;  // ready for the next step
}

template <class T, int VEC>
void launch(const DecodeAttentionArgs& a, Stream stream) {
  const dim3 grid(unsigned(decode_attention_splits(a.chunk_size)), unsigned(decode_attention_groups(a.dv)),
                  unsigned(a.batch * a.heads));
  launch_overlapped(attention_kernel<T, VEC>, grid, kThreadsPerBlock, shared_floats(a) * sizeof(float), stream, a);
}

template <class T>
void dispatch_vector_width(const DecodeAttentionArgs& a, Stream stream) {
  // 16-byte loads of the caches need rows of whole vectors (the buffers themselves are aligned).
  constexpr int kVec = kPackedWidth<T>;
  if (a.dz % kVec == 0 && a.dv % kVec == 0) launch<T, kVec>(a, stream);
  else launch<T, 1>(a, stream);
}

}  // namespace

void decode_attention(const DecodeAttentionArgs& a, Stream stream) {
  MGL_CHECK(a.batch > 0 && a.heads > 0 && a.dz > 0 && a.dz % 2 == 0 && a.dv > 0 && a.chunk_size > 0,
            "decode_attention: bad sizes (batch ", a.batch, ", heads ", a.heads, ", dz ", a.dz, ", dv ", a.dv,
            ", chunk ", a.chunk_size, ")");
  MGL_CHECK(a.rope_frequencies && a.partial && a.split_stats && a.arrivals && a.out,
            "decode_attention: missing RoPE frequencies or scratch buffers");
  MGL_CHECK(shared_floats(a) * sizeof(float) <= 48 * 1024, "decode_attention: a head of ", a.dz,
            " dims and a chunk of ", a.chunk_size, " need more than 48 KiB of shared memory");
  switch (a.dtype) {
    case DType::f32: dispatch_vector_width<float>(a, stream); break;
    case DType::bf16: dispatch_vector_width<__nv_bfloat16>(a, stream); break;
    default: MGL_FAIL("decode_attention: caches are f32 or bf16, got ", dtype_name(a.dtype));
  }
}

}  // namespace mgl::cuda

// Decoding attention over the current partial chunk; cuda/decode_attention.h has the math.
//
// Two kernels. attention_kernel: grid (splits, channel groups, B * H), 8 warps. Block (s, g, bh)
// owns keys j0 .. j0 + 63 (j0 = 64 s) and value channels c0 .. c0 + 255 (c0 = 256 g) of sequence b,
// head h; warp w owns the block's keys j0 + w + 8i (i < 8). A lane holds dims (32 l + lane) KVEC + x
// (l < KLOADS, x < KVEC) of q and of each of its warp's keys, and value channels
// c0 + (32 l + lane) VVEC + x (l < VLOADS).
// The kernel is a chain of dependent steps, each costing a trip to memory or a barrier, so the work
// is laid out to keep the chain short:
//  - Prologue (cuda/dependent_launch.cuh), while the projections before this kernel finish: the
//    warp's cached keys and values (written by earlier steps) and the lane's q constants into
//    registers, and the lane's RoPE rotations cos/sin(m θ_i), which depend only on the position.
//  - After the wait, one load: the lane's dims of z. Every warp forms q itself, in registers (a warp
//    shuffle for the RMS of z); the warp owning key m also forms k and appends k, v to the cache (the
//    new key and value rounded to the cache's dtype, as every later step will read them).
//  - Scores: per key, the lane's partial dot product and a warp shuffle sum. The warp's softmax
//    statistics (max, sum of exponentials) and its sum of exp(s_j - max) v_j are local to the warp.
//  - One barrier: the block combines its 8 warps (rescaled to the block's max) in shared memory,
//    thread t for channel c0 + t.
//  - With one live split (m < 64) the block writes out = gate ⊙ O itself; otherwise it stores its
//    partial sum and (max, sum).
// merge_kernel: one block per (group, bh) merges the live splits. Merging in a second kernel costs a
// launch, which overlaps; merging in the last block of the first kernel to finish (a fence and an
// atomic count per block, then a serial merge after the slowest block) measured 6.6 µs more per
// layer on an H200 than no merge at all, against about 2 µs for this kernel.
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
static_assert(kThreadsPerBlock == kDecodeChannelsPerGroup, "the block combine gives each thread one channel");
// Splits whose partial sums the merging block loads at once.
constexpr int kMergeLoads = 16;

// Row (token j, head h) of sequence b in a [B, c, H, width] cache.
__device__ __forceinline__ int64_t cache_row(const DecodeAttentionArgs& a, int64_t b, int64_t j, int64_t h) {
  return (b * a.chunk_size + j) * a.heads + h;
}

// KLOADS * KVEC dims of q, k and of each cached key per lane (KVEC even: RoPE pairs stay in a lane);
// VLOADS * VVEC value channels per lane.
// Two blocks per SM (at most 128 registers), so that the blocks of a late position in the chunk (up
// to 256) run in one wave; the few bytes this spills cost less than a second wave.
template <class T, int KVEC, int KLOADS, int VVEC>
__global__ void __launch_bounds__(kThreadsPerBlock, 2) attention_kernel(DecodeAttentionArgs a) {
  constexpr int VLOADS = int(kDecodeChannelsPerGroup) / (32 * VVEC);
  static_assert(KVEC % 2 == 0 && VLOADS * 32 * VVEC == int(kDecodeChannelsPerGroup));
  __shared__ float warp_sums[kWarps][kDecodeChannelsPerGroup];
  __shared__ MaxSum<float> warp_stats[kWarps];

  const int64_t split = blockIdx.x, group = blockIdx.y, bh = blockIdx.z;
  const int64_t b = bh / a.heads, h = bh % a.heads, groups = gridDim.y, BH = gridDim.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // m was written by the previous step's last kernel, which has completed (see dependent_launch.cuh).
  const int64_t m = *a.position;
  const int64_t j0 = split * kDecodeKeysPerSplit;
  if (j0 > m) return;  // the whole block: no key of it is visible yet
  const int64_t c0 = group * kDecodeChannelsPerGroup;
  const int64_t channels = min(kDecodeChannelsPerGroup, a.dv - c0);
  T* keys = static_cast<T*>(a.keys);
  T* values = static_cast<T*>(a.values);
  auto key_of = [&](int i) { return j0 + warp + int64_t(i) * kWarps; };  // warp's key i
  auto dim_of = [&](int l) { return (int64_t(l) * 32 + lane) * KVEC; };   // lane's first dim of load l
  auto channel_of = [&](int l) { return (int64_t(l) * 32 + lane) * VVEC; };
  const bool owns_new = (m - j0) % kWarps == warp && m < j0 + kDecodeKeysPerSplit;  // warp holds key m

  // Prologue: cached keys and values of the warp's keys j < m, the q constants of the lane's dims (the
  // k constants towards L2), and the rotations of its pairs at position m.
  Packed<T, KVEC> key_raw[kKeysPerWarp][KLOADS];
  Packed<T, VVEC> value_raw[kKeysPerWarp][VLOADS];
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    if (key_of(i) >= m) continue;
    const int64_t row = cache_row(a, b, key_of(i), h);
#pragma unroll
    for (int l = 0; l < KLOADS; ++l)
      if (dim_of(l) < a.dz) key_raw[i][l] = load_packed<T, KVEC>(keys + row * a.dz + dim_of(l));
#pragma unroll
    for (int l = 0; l < VLOADS; ++l)
      if (channel_of(l) < channels) value_raw[i][l] = load_packed<T, VVEC>(values + row * a.dv + c0 + channel_of(l));
  }
  const int64_t Z = a.heads * a.dz;
  float q_scale[KLOADS][KVEC], q_offset[KLOADS][KVEC];
  float cosine[KLOADS][KVEC / 2], sine[KLOADS][KVEC / 2];
#pragma unroll
  for (int l = 0; l < KLOADS; ++l) {
    if (dim_of(l) >= a.dz) continue;
    const int64_t c = h * a.dz + dim_of(l);
#pragma unroll
    for (int x = 0; x < KVEC; ++x) q_scale[l][x] = __ldg(a.qk_scale + c + x), q_offset[l][x] = __ldg(a.qk_offset + c + x);
#pragma unroll
    for (int x = 0; x < KVEC / 2; ++x)
      sincosf(float(m) * __ldg(a.rope_frequencies + dim_of(l) / 2 + x), &sine[l][x], &cosine[l][x]);
    // The k constants only on their way to L2: registers are the scarce resource here, and the
    // warp that needs them loads them with z.
    if (owns_new) {
      prefetch_to_l2(a.qk_scale + Z + c, KVEC * int64_t(sizeof(float)), 0, 1);
      prefetch_to_l2(a.qk_offset + Z + c, KVEC * int64_t(sizeof(float)), 0, 1);
    }
  }
  wait_for_previous_kernel();
  allow_next_kernel();

  // ẑ = z / rms(z); q = RoPE_m(ẑ ⊙ qk_scale[0] + qk_offset[0]), and k likewise with row 1.
  const float* z = a.z + b * a.z_ld + h * a.dz;
  float z_lane[KLOADS][KVEC];
  float squares = 0.0f;
#pragma unroll
  for (int l = 0; l < KLOADS; ++l) {
    if (dim_of(l) >= a.dz) continue;
    load_floats<KVEC>(z + dim_of(l), z_lane[l]);
#pragma unroll
    for (int x = 0; x < KVEC; ++x) squares += z_lane[l][x] * z_lane[l][x];
  }
  const float rz = 1.0f / sqrtf(warp_sum(squares) / float(a.dz) + a.eps);
  float q[KLOADS][KVEC], k_new[KLOADS][KVEC];
  auto rotate = [&](const float (&scale)[KVEC], const float (&offset)[KVEC], int l, float (&out)[KVEC]) {
#pragma unroll
    for (int x = 0; x < KVEC; x += 2) {
      const float x0 = z_lane[l][x] * rz * scale[x] + offset[x], x1 = z_lane[l][x + 1] * rz * scale[x + 1] + offset[x + 1];
      out[x] = x0 * cosine[l][x / 2] - x1 * sine[l][x / 2];
      out[x + 1] = x0 * sine[l][x / 2] + x1 * cosine[l][x / 2];
    }
  };
#pragma unroll
  for (int l = 0; l < KLOADS; ++l) {
    if (dim_of(l) >= a.dz) continue;
    rotate(q_scale[l], q_offset[l], l, q[l]);
    if (!owns_new) continue;
    float k_scale[KVEC], k_offset[KVEC];
#pragma unroll
    for (int x = 0; x < KVEC; ++x) {
      const int64_t c = Z + h * a.dz + dim_of(l) + x;
      k_scale[x] = __ldg(a.qk_scale + c), k_offset[x] = __ldg(a.qk_offset + c);
    }
    rotate(k_scale, k_offset, l, k_new[l]);
    T* cached = keys + cache_row(a, b, m, h) * a.dz + dim_of(l);
#pragma unroll
    for (int x = 0; x < KVEC; ++x) {
      const T rounded = from_float<T>(k_new[l][x]);
      k_new[l][x] = to_float(rounded);
      if (group == 0) cached[x] = rounded;
    }
  }
  float v_new[VLOADS][VVEC];
  if (owns_new) {
    const float* v = a.v + b * a.v_ld + h * a.dv + c0;
    T* cached = values + cache_row(a, b, m, h) * a.dv + c0;
#pragma unroll
    for (int l = 0; l < VLOADS; ++l)
#pragma unroll
      for (int x = 0; x < VVEC; ++x) {
        if (channel_of(l) + x >= channels) continue;
        const T rounded = from_float<T>(v[channel_of(l) + x]);
        cached[channel_of(l) + x] = rounded;
        v_new[l][x] = to_float(rounded);
      }
  }

  // Scores s_i = q · key_i of the warp's keys (-inf past m), then the warp's softmax statistics.
  float score[kKeysPerWarp];
  MaxSum<float> stats{-INFINITY, 0.0f};
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    float dot = 0.0f;
#pragma unroll
    for (int l = 0; l < KLOADS; ++l) {
      if (dim_of(l) >= a.dz) continue;
      float key[KVEC];
      if (key_of(i) < m) unpack<T, KVEC>(key_raw[i][l], key);
#pragma unroll
      for (int x = 0; x < KVEC; ++x) dot += q[l][x] * (key_of(i) == m ? k_new[l][x] : key[x]);
    }
    score[i] = key_of(i) <= m ? warp_sum(dot) : -INFINITY;
    stats.max = fmaxf(stats.max, score[i]);
  }
  // The warp's sum of exp(s_i - max) v_i over its keys, for the lane's channels.
  float acc[VLOADS][VVEC] = {};
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    if (key_of(i) > m) continue;
    const float p = expf(score[i] - stats.max);
    stats.sum += p;
#pragma unroll
    for (int l = 0; l < VLOADS; ++l) {
      float v[VVEC];
      if (key_of(i) < m) unpack<T, VVEC>(value_raw[i][l], v);
#pragma unroll
      for (int x = 0; x < VVEC; ++x) acc[l][x] += p * (key_of(i) == m ? v_new[l][x] : v[x]);
    }
  }
#pragma unroll
  for (int l = 0; l < VLOADS; ++l)
#pragma unroll
    for (int x = 0; x < VVEC; ++x)
      if (channel_of(l) + x < kDecodeChannelsPerGroup) warp_sums[warp][channel_of(l) + x] = acc[l][x];
  if (lane == 0) warp_stats[warp] = stats;
  __syncthreads();

  // The block's (max, sum) and weighted sum of channel c0 + e, every warp rescaled to the block's max.
  const int e = threadIdx.x;
  MaxSum<float> block_stats{-INFINITY, 0.0f};
#pragma unroll
  for (int w = 0; w < kWarps; ++w) block_stats = merge(block_stats, warp_stats[w]);
  float block_sum = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) block_sum += warp_sums[w][e] * rescale(warp_stats[w].max, block_stats.max);

  const int64_t live_splits = m / kDecodeKeysPerSplit + 1;
  const float* gate = a.gate + b * a.gate_ld + h * a.dv + c0;
  float* out = a.out + b * a.heads * a.dv + h * a.dv + c0;
  if (live_splits == 1) {  // the only split: normalise and gate directly
    if (e < channels) out[e] = block_sum / block_stats.sum * gate[e];
    return;
  }
  float* split_stats = a.split_stats + ((split * BH + bh) * groups + group) * 2;
  if (e < channels) a.partial[(split * BH + bh) * a.dv + c0 + e] = block_sum;
  if (e == 0) split_stats[0] = block_stats.max, split_stats[1] = block_stats.sum;
}

// The merge of the splits: block (g, bh) of 256 threads, thread e for channel c0 + e (c0 = 256 g).
// out = gate ⊙ sum_s e^(max_s - M) partial_s / L, folded in split order with a running maximum; the
// loads of kMergeLoads splits are in flight at once. With one live split the attention kernel has
// written out itself.
__global__ void __launch_bounds__(kDecodeChannelsPerGroup) merge_kernel(DecodeAttentionArgs a) {
  const int64_t group = blockIdx.x, bh = blockIdx.y, groups = gridDim.x, BH = gridDim.y;
  const int64_t b = bh / a.heads, h = bh % a.heads;
  const int64_t m = *a.position;
  const int64_t c0 = group * kDecodeChannelsPerGroup, e = threadIdx.x;
  const bool active = e < min(kDecodeChannelsPerGroup, a.dv - c0);
  // Prologue: the gate, written by the projections two kernels back (see dependent_launch.cuh).
  const float gate = active ? a.gate[b * a.gate_ld + h * a.dv + c0 + e] : 0.0f;
  wait_for_previous_kernel();
  allow_next_kernel();
  const int64_t live_splits = m / kDecodeKeysPerSplit + 1;
  if (live_splits == 1 || !active) return;

  auto stats_of = [&](int64_t s) { return a.split_stats + ((s * BH + bh) * groups + group) * 2; };
  MaxSum<float> total{-INFINITY, 0.0f};
  float o = 0.0f;
  for (int64_t s0 = 0; s0 < live_splits; s0 += kMergeLoads) {
    float part[kMergeLoads], part_max[kMergeLoads], part_sum[kMergeLoads];
#pragma unroll
    for (int u = 0; u < kMergeLoads; ++u) {
      if (s0 + u >= live_splits) continue;
      part[u] = a.partial[((s0 + u) * BH + bh) * a.dv + c0 + e];
      part_max[u] = stats_of(s0 + u)[0], part_sum[u] = stats_of(s0 + u)[1];
    }
#pragma unroll
    for (int u = 0; u < kMergeLoads; ++u) {
      if (s0 + u >= live_splits) continue;
      const float M = fmaxf(total.max, part_max[u]);
      const float old_scale = rescale(total.max, M), new_scale = rescale(part_max[u], M);
      o = o * old_scale + part[u] * new_scale;
      total = {M, total.sum * old_scale + part_sum[u] * new_scale};
    }
  }
  a.out[b * a.heads * a.dv + h * a.dv + c0 + e] = o / total.sum * gate;
}

template <class T, int KVEC, int KLOADS, int VVEC>
void launch(const DecodeAttentionArgs& a, Stream stream) {
  const unsigned splits = unsigned(decode_attention_splits(a.chunk_size)), groups = unsigned(decode_attention_groups(a.dv));
  const unsigned BH = unsigned(a.batch * a.heads);
  launch_overlapped(attention_kernel<T, KVEC, KLOADS, VVEC>, dim3(splits, groups, BH), kThreadsPerBlock, 0, stream, a);
  launch_overlapped(merge_kernel, dim3(groups, BH), unsigned(kDecodeChannelsPerGroup), 0, stream, a);
}

// The key dims per lane: 16-byte loads when whole vectors tile a head's dims (else pairs), as many
// loads as a head of dz dims needs.
template <class T, int VVEC>
void dispatch_key_width(const DecodeAttentionArgs& a, Stream stream) {
  constexpr int kVec = kPackedWidth<T>;
  auto by_loads = [&]<int KVEC>() {
    const int64_t loads = (a.dz + 32 * KVEC - 1) / (32 * KVEC);
    if (loads <= 1) return launch<T, KVEC, 1, VVEC>(a, stream);
    if (loads <= 2) return launch<T, KVEC, 2, VVEC>(a, stream);
    MGL_CHECK(loads <= 4, "decode_attention: a head of ", a.dz, " query/key dims is more than the ", 4 * 32 * KVEC,
              " a warp holds");
    return launch<T, KVEC, 4, VVEC>(a, stream);
  };
  if (a.dz % kVec == 0) by_loads.template operator()<kVec>();
  else by_loads.template operator()<2>();
}

template <class T>
void dispatch(const DecodeAttentionArgs& a, Stream stream) {
  // 16-byte loads of values need rows of whole vectors (the buffers themselves are aligned).
  if (a.dv % kPackedWidth<T> == 0) dispatch_key_width<T, kPackedWidth<T>>(a, stream);
  else dispatch_key_width<T, 1>(a, stream);
}

}  // namespace

void decode_attention(const DecodeAttentionArgs& a, Stream stream) {
  MGL_CHECK(a.batch > 0 && a.heads > 0 && a.dz > 0 && a.dz % 2 == 0 && a.dv > 0 && a.chunk_size > 0,
            "decode_attention: bad sizes (batch ", a.batch, ", heads ", a.heads, ", dz ", a.dz, ", dv ", a.dv,
            ", chunk ", a.chunk_size, ")");
  MGL_CHECK(a.rope_frequencies && a.partial && a.split_stats && a.out,
            "decode_attention: missing RoPE frequencies or scratch buffers");
  switch (a.dtype) {
    case DType::f32: dispatch<float>(a, stream); break;
    case DType::bf16: dispatch<__nv_bfloat16>(a, stream); break;
    default: MGL_FAIL("decode_attention: caches are f32 or bf16, got ", dtype_name(a.dtype));
  }
}

}  // namespace mgl::cuda

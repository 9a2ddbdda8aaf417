#pragma once
// Device helpers for kernels that give each row of a contiguous [rows, cols] tensor to one thread
// block (reductions, softmax, cross-entropy): the math type of a storage type, loads and stores
// through it, the block size for a row, and a block-wide reduction whose result every thread sees.
#include <cmath>
#include <type_traits>

#include "cuda/common.cuh"

namespace mgl::cuda {

// Arithmetic happens in f32 registers for f32 and bf16 storage, in f64 for f64.
template <class T>
constexpr bool is_floating_storage =
    std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, double>;
template <class T>
using math_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__device__ __forceinline__ math_t<T> load_math(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(*p);
  else return *p;
}
template <class T>
__device__ __forceinline__ void store_math(T* p, math_t<T> v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) *p = __float2bfloat16_rn(v);
  else *p = v;
}

// Threads for the block that folds one row: a multiple of the warp size, enough for one element
// per thread on short rows (so rows of 1 or 31 elements do not idle 256 threads), at most
// kMaxRowThreads on long rows (each thread then loops over cols / kMaxRowThreads elements).
constexpr int kMaxRowThreads = 512;
inline unsigned row_threads(int64_t cols) {
  const int64_t warps = (cols + 31) / 32;
  return static_cast<unsigned>(32 * (warps < 1 ? 1 : (warps > kMaxRowThreads / 32 ? kMaxRowThreads / 32 : warps)));
}
// One block per row; kernels loop (grid-stride) over rows beyond the grid.
inline unsigned row_blocks(int64_t rows) {
  constexpr int64_t kMaxBlocks = 65535LL * 32;
  return static_cast<unsigned>(rows < 1 ? 1 : (rows > kMaxBlocks ? kMaxBlocks : rows));
}

// The running log-sum-exp of a row, in one pass (the "online softmax"): `max` is the largest value
// seen and `sum` = sum_i exp(x_i - max). Folding a value or merging two states rescales the sum of
// the side with the smaller max by exp(old max - new max). The start state is {-inf, 0}.
template <class M>
struct MaxSum {
  M max;
  M sum;
};
// exp(a - m) for m >= a, and exactly 1 when a == m (so that two start states, both -inf, merge
// to {-inf, 0} instead of NaN from -inf - -inf).
template <class M>
__device__ __forceinline__ M rescale(M a, M m) {
  return a == m ? M(1) : exp(a - m);
}
template <class M>
__device__ __forceinline__ MaxSum<M> fold(MaxSum<M> s, M x) {
  const M m = fmax(s.max, x);  // fmax skips NaN; a NaN x still poisons the sum through exp(NaN)
  return {m, s.sum * rescale(s.max, m) + rescale(x, m)};
}
template <class M>
__device__ __forceinline__ MaxSum<M> merge(MaxSum<M> a, MaxSum<M> b) {
  const M m = fmax(a.max, b.max);
  return {m, a.sum * rescale(a.max, m) + b.sum * rescale(b.max, m)};
}

__device__ __forceinline__ float shuffle_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ double shuffle_xor(double v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
template <class M>
__device__ __forceinline__ MaxSum<M> shuffle_xor(MaxSum<M> v, int mask) {
  return {shuffle_xor(v.max, mask), shuffle_xor(v.sum, mask)};
}
__device__ __forceinline__ float shuffle_from(float v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }
__device__ __forceinline__ double shuffle_from(double v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }
template <class M>
__device__ __forceinline__ MaxSum<M> shuffle_from(MaxSum<M> v, int lane) {
  return {shuffle_from(v.max, lane), shuffle_from(v.sum, lane)};
}

// Combines the `value` of every lane of the warp with `combine` (a butterfly of xor shuffles) and
// returns lane 0's result to every lane, so all lanes hold identical bits. No shared memory and no
// block synchronisation: for kernels whose warps work independently.
template <class V, class Combine>
__device__ __forceinline__ V warp_reduce(V value, Combine combine) {
  for (int mask = 16; mask > 0; mask /= 2) value = combine(value, shuffle_xor(value, mask));
  return shuffle_from(value, 0);
}
template <class M>
__device__ __forceinline__ M warp_sum(M value) {
  return warp_reduce(value, [](M l, M r) { return l + r; });
}

// Combines every thread's `value` with `combine` (associative and commutative) and returns the
// result to every thread: a butterfly (xor) shuffle inside each warp, then each thread folds the
// per-warp partials from shared memory in the same order, so all threads hold identical bits.
// blockDim.x must be a multiple of 32 (at most 1024), and every thread of the block must call it
// (it synchronises twice; the second lets the next call reuse the shared partials).
template <class V, class Combine>
__device__ V block_reduce(V value, Combine combine) {
  __shared__ V partial[32];
  for (int mask = 16; mask > 0; mask /= 2) value = combine(value, shuffle_xor(value, mask));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = partial[0];
  for (int w = 1; w < warps; ++w) value = combine(value, partial[w]);
  __syncthreads();
  return value;
}

}  // namespace mgl::cuda

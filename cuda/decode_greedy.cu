// Greedy choice of the next token on the device; cuda/decode_greedy.h has the math.
//
// One block of 1024 threads per sequence: thread t scans ids t, t + 1024, ... in increasing order and
// keeps its best (score, id); block_reduce (cuda/row_reduce.cuh) then combines the threads. "Better"
// is a higher score, or an equal score and a lower id, so the result is the first maximum whatever
// the order of the combination.
#include <cmath>

#include "base/cuda_check.h"
#include "cuda/decode_greedy.h"
#include "cuda/dependent_launch.cuh"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int kThreadsPerRow = 1024;

struct Best {
  double score;
  int64_t id;   // -1: none yet
  int invalid;  // a NaN or +inf logit was seen
};

__device__ __forceinline__ Best better(const Best& a, const Best& b) {
  Best r = (b.id >= 0 && (a.id < 0 || b.score > a.score || (b.score == a.score && b.id < a.id))) ? b : a;
  r.invalid = a.invalid | b.invalid;
  return r;
}

// For block_reduce's shuffles.
__device__ __forceinline__ Best shuffle_xor(const Best& v, int mask) {
  return {__shfl_xor_sync(0xffffffffu, v.score, mask), __shfl_xor_sync(0xffffffffu, v.id, mask),
          __shfl_xor_sync(0xffffffffu, v.invalid, mask)};
}

__global__ void __launch_bounds__(kThreadsPerRow) greedy_kernel(DecodeGreedyArgs a) {
  const int64_t b = blockIdx.x;
  const float* logits = a.logits + b * a.vocab;
  int32_t* seen = a.seen + b * a.vocab;
  wait_for_previous_kernel();  // the logits come from the LM head just before
  allow_next_kernel();

  Best best{-INFINITY, -1, 0};
  for (int64_t i = threadIdx.x; i < a.choices; i += kThreadsPerRow) {
    const float l = logits[i];
    if (isnan(l) || l == INFINITY) best.invalid = 1;
    double s = l;
    if (seen[i]) s = s > 0 ? s / a.repetition_penalty : s * a.repetition_penalty;
    if (best.id < 0 || s > best.score) best = {s, i, best.invalid};
  }
  best = block_reduce(best, [](const Best& l, const Best& r) { return better(l, r); });
  if (threadIdx.x != 0) return;
  if (best.invalid || best.id < 0) {
    a.ids[b] = -1;
    return;
  }
  a.ids[b] = best.id;
  seen[best.id] = 1;
}

}  // namespace

void decode_greedy(const DecodeGreedyArgs& a, Stream stream) {
  MGL_CHECK(a.batch > 0 && a.choices > 0 && a.choices <= a.vocab, "decode_greedy: bad sizes (batch ", a.batch,
            ", choices ", a.choices, " of a vocabulary of ", a.vocab, ")");
  MGL_CHECK(a.logits && a.seen && a.ids, "decode_greedy: missing logits, seen marks or ids");
  MGL_CHECK(std::isfinite(a.repetition_penalty) && a.repetition_penalty > 0, "decode_greedy: repetition penalty ",
            a.repetition_penalty, " is not positive");
  launch_overlapped(greedy_kernel, unsigned(a.batch), kThreadsPerRow, 0, stream, a);
}

}  // namespace mgl::cuda

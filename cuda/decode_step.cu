// The small kernels of a decoding step: embedding lookup, TimestepNorm + CEMA step, position advance.
// cuda/decode_step.h has the math.
#include <cmath>

#include "base/timestep_norm_math.h"
#include "cuda/decode_step.h"
#include "cuda/dependent_launch.cuh"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

using C32 = Complex<float>;

// ---- embedding ------------------------------------------------------------------------------------

// Launch: one block per token row, threads over the D channels.
template <class T>
__global__ void embed_kernel(const T* table, int64_t vocab, int64_t dim, const int64_t* ids, float scale, float* x) {
  const int64_t b = blockIdx.x;
  wait_for_previous_kernel();
  allow_next_kernel();
  const int64_t id = ids[b];
  const bool valid = id >= 0 && id < vocab;
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
    x[b * dim + k] = valid ? scale * to_float(table[id * dim + k]) : NAN;
}

// ---- TimestepNorm step + CEMA step ------------------------------------------------------------------

// Launch: grid (G, B), one block per (group, sequence), threads over the group's channels and, for
// the CEMA step, over its (channel, mode) pairs (a thread per pair: the pairs' coefficients and states
// are contiguous, so the loads coalesce and none waits on another). Shared memory: the group's
// normalised values [dg] and the per-mode terms Re(gamma h) [dg, N], which one thread per channel
// then adds up in mode order.
//
// Everything but x is this kernel's own (parameters, the running statistics and the CEMA state,
// which only this kernel writes), so the prologue (cuda/dependent_launch.cuh) loads each thread's
// first channel and pair of them into registers while the previous kernel finishes. After the wait
// each warp computes the group's moments itself (two passes over the dg values: mean, then squared
// deviations; warp shuffles, no block reduction), and every thread folds the state the same way;
// thread 0 stores it.
__global__ void norm_cema_kernel(DecodeNormArgs a) {
  extern __shared__ float shared[];
  const int64_t dg = a.dim / a.groups, N = a.modes;
  float* y_group = shared;      // [dg]
  float* mode_terms = shared + dg;  // [dg, N]
  const int64_t g = blockIdx.x, b = blockIdx.y, first = g * dg, at = b * a.groups + g;
  const int64_t pairs = a.cema_h ? dg * N : 0;
  const int64_t t = threadIdx.x;

  // Prologue: the state and the parameters of the thread's channel t and pair t.
  const int64_t n = a.count[at];
  const float old_mean = a.mean[at], old_var = a.var[at];
  float gain = 0.0f, shift = 0.0f, omega = 0.0f;
  if (t < dg) {
    gain = a.weight[first + t] + 1.0f, shift = a.bias[first + t];
    if (a.cema_h) omega = a.cema.omega[first + t];
  }
  C32* h = a.cema_h ? a.cema_h + (b * a.dim + first) * N : nullptr;  // the group's [dg, N] states
  C32 h_t{}, q_t{}, gamma_t{};
  float p_t = 0.0f;
  if (t < pairs) h_t = h[t], q_t = a.cema.q[first * N + t], p_t = a.cema.p[first * N + t], gamma_t = a.cema.gamma[first * N + t];
  wait_for_previous_kernel();
  allow_next_kernel();

  const float* x = a.x + b * a.dim + first;
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
  for (int64_t k = lane; k < dg; k += 32) sum += x[k];
  const float step_mean = warp_sum(sum) / float(dg);
  float squares = 0.0f;
  for (int64_t k = lane; k < dg; k += 32) squares += (x[k] - step_mean) * (x[k] - step_mean);
  const float step_var = warp_sum(squares) / float(dg);

  const RunningMoments<float> state = merge(RunningMoments<float>{n, old_mean, old_var}, {1, step_mean, step_var});
  const float mean = state.mean, var = state.var;
  const float rstd = 1.0f / sqrtf(var + a.eps);
  for (int64_t k = t; k < dg; k += blockDim.x) {
    const int64_t c = first + k;
    const bool mine = k == t;  // the channel whose parameters the prologue loaded
    const float y = (x[k] - mean) * rstd * (mine ? gain : a.weight[c] + 1.0f) + (mine ? shift : a.bias[c]);
    a.y[b * a.dim + c] = y;
    y_group[k] = y;
  }
  __syncthreads();  // y_group is complete, and every thread has read the old state (prologue)
  if (t == 0) {
    a.count[at] = state.count;
    a.mean[at] = mean;
    a.var[at] = var;
  }
  if (!a.cema_h) return;

  // h <- q h + p y;  term = Re(gamma h)
  for (int64_t i = t; i < pairs; i += blockDim.x) {
    const int64_t mode = first * N + i;  // (channel first + i / N, mode i % N) of the [D, N] coefficients
    const bool mine = i == t;            // the pair whose values the prologue loaded
    const C32 next = (mine ? q_t : a.cema.q[mode]) * (mine ? h_t : h[i]) + (mine ? p_t : a.cema.p[mode]) * y_group[i / N];
    h[i] = next;
    const C32 gamma = mine ? gamma_t : a.cema.gamma[mode];
    mode_terms[i] = gamma.re * next.re - gamma.im * next.im;
  }
  __syncthreads();
  for (int64_t k = t; k < dg; k += blockDim.x) {
    float u = (k == t ? omega : a.cema.omega[first + k]) * y_group[k];
    for (int64_t mode = 0; mode < N; ++mode) u += mode_terms[k * N + mode];
    a.cema_y[b * a.dim + first + k] = u;
  }
}

__global__ void advance_kernel(int32_t* position, int32_t chunk_size) {
  wait_for_previous_kernel();
  allow_next_kernel();
  *position = (*position + 1) % chunk_size;
}

}  // namespace

void decode_embed(const DecodeEmbedArgs& args, Stream stream) {
  const unsigned threads = row_threads(args.dim);
  switch (args.dtype) {
    case DType::f32:
      launch_overlapped(embed_kernel<float>, unsigned(args.batch), threads, 0, stream,
                        static_cast<const float*>(args.table), args.vocab, args.dim, args.ids, args.scale, args.x);
      break;
    case DType::bf16:
      launch_overlapped(embed_kernel<__nv_bfloat16>, unsigned(args.batch), threads, 0, stream,
                        static_cast<const __nv_bfloat16*>(args.table), args.vocab, args.dim, args.ids, args.scale,
                        args.x);
      break;
    default: MGL_FAIL("decode_embed: tables are f32 or bf16, got ", dtype_name(args.dtype));
  }
  MGL_CUDA_CHECK_LAUNCH();
}

void decode_timestep_norm(const DecodeNormArgs& args, Stream stream) {
  MGL_CHECK(args.groups > 0 && args.dim % args.groups == 0, "decode_timestep_norm: ", args.dim,
            " channels do not split into ", args.groups, " groups");
  MGL_CHECK(args.cema_h == nullptr || (args.modes > 0 && args.cema_y != nullptr),
            "decode_timestep_norm: the CEMA step needs modes > 0 and an output");
  const int64_t dg = args.dim / args.groups, pairs = args.cema_h ? dg * args.modes : 0;
  const dim3 grid(unsigned(args.groups), unsigned(args.batch));
  const size_t shared = (dg + pairs) * sizeof(float);
  MGL_CHECK(shared <= 48 * 1024, "decode_timestep_norm: a group of ", dg, " channels and ", args.modes,
            " CEMA modes needs ", shared, " bytes of shared memory (48 KiB available)");
  launch_overlapped(norm_cema_kernel, grid, row_threads(pairs > dg ? pairs : dg), shared, stream, args);
}

void decode_advance(const DecodeAdvanceArgs& args, Stream stream) {
  launch_overlapped(advance_kernel, 1, 1, 0, stream, args.position, int32_t(args.chunk_size));
}

}  // namespace mgl::cuda

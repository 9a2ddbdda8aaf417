// The small kernels of a decoding step: embedding lookup, TimestepNorm + CEMA step, position advance.
// cuda/decode_step.h has the math.
#include <cmath>

#include "cuda/decode_step.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

using C32 = Complex<float>;

// ---- embedding ------------------------------------------------------------------------------------

// Launch: one block per token row, threads over the D channels.
template <class T>
__global__ void embed_kernel(const T* table, int64_t vocab, int64_t dim, const int64_t* ids, float scale, float* x) {
  const int64_t b = blockIdx.x;
  const int64_t id = ids[b];
  const bool valid = id >= 0 && id < vocab;
  for (int64_t k = threadIdx.x; k < dim; k += blockDim.x)
    x[b * dim + k] = valid ? scale * to_float(table[id * dim + k]) : NAN;
}

// ---- TimestepNorm step + CEMA step ------------------------------------------------------------------

// Launch: grid (G, B), one block per (group, sequence), threads over the group's channels and, for
// the CEMA step, over its (channel, mode) pairs (a thread per pair: the pairs' coefficients and states
// are contiguous, so the loads coalesce and none waits on another). The group's moments are block
// reductions (two passes: mean, then squared deviations); every thread folds the state the same way
// and thread 0 stores it. Shared memory: the group's normalised values [dg] and the per-mode terms
// Re(gamma h) [dg, N], which one thread per channel then adds up in mode order.
__global__ void norm_cema_kernel(DecodeNormArgs a) {
  extern __shared__ float shared[];
  float* y_group = shared;                         // [dg]
  float* mode_terms = shared + a.dim / a.groups;  // [dg, N]
  const int64_t g = blockIdx.x, b = blockIdx.y;
  const int64_t dg = a.dim / a.groups, first = g * dg;
  const float* x = a.x + b * a.dim + first;
  const auto plus = [](float l, float r) { return l + r; };

  float sum = 0.0f;
  for (int64_t k = threadIdx.x; k < dg; k += blockDim.x) sum += x[k];
  const float step_mean = block_reduce(sum, plus) / float(dg);
  float squares = 0.0f;
  for (int64_t k = threadIdx.x; k < dg; k += blockDim.x) squares += (x[k] - step_mean) * (x[k] - step_mean);
  const float step_var = block_reduce(squares, plus) / float(dg);

  const int64_t at = b * a.groups + g;
  const int64_t n = a.count[at];
  float mean = step_mean, var = step_var;
  if (n > 0) {
    const float wa = float(n) / float(n + 1), wb = 1.0f / float(n + 1);
    const float d = step_mean - a.mean[at];
    var = a.var[at] + wb * ((step_var - a.var[at]) + wa * d * d);
    mean = a.mean[at] + wb * d;
  }
  __syncthreads();  // every thread has read the old state before thread 0 replaces it
  if (threadIdx.x == 0) {
    a.count[at] = n + 1;
    a.mean[at] = mean;
    a.var[at] = var;
  }
  const float rstd = 1.0f / sqrtf(var + a.eps);
  for (int64_t k = threadIdx.x; k < dg; k += blockDim.x) {
    const int64_t c = first + k;
    const float y = (x[k] - mean) * rstd * (a.weight[c] + 1.0f) + a.bias[c];
    a.y[b * a.dim + c] = y;
    y_group[k] = y;
  }
  if (a.cema_h == nullptr) return;
  __syncthreads();

  const int64_t N = a.modes;
  C32* h = a.cema_h + (b * a.dim + first) * N;  // the group's [dg, N] states
  for (int64_t i = threadIdx.x; i < dg * N; i += blockDim.x) {
    const int64_t mode = first * N + i;  // (channel first + i / N, mode i % N) of the [D, N] coefficients
    const C32 next = a.cema.q[mode] * h[i] + a.cema.p[mode] * y_group[i / N];
    h[i] = next;
    mode_terms[i] = a.cema.gamma[mode].re * next.re - a.cema.gamma[mode].im * next.im;
  }
  __syncthreads();
  for (int64_t k = threadIdx.x; k < dg; k += blockDim.x) {
    float u = a.cema.omega[first + k] * y_group[k];
    for (int64_t m = 0; m < N; ++m) u += mode_terms[k * N + m];
    a.cema_y[b * a.dim + first + k] = u;
  }
}

__global__ void advance_kernel(int32_t* position, int32_t chunk_size) { *position = (*position + 1) % chunk_size; }

}  // namespace

void decode_embed(DType dtype, const void* table, int64_t vocab, int64_t dim, const int64_t* ids, int64_t batch,
                  float scale, float* x, Stream stream) {
  const unsigned threads = row_threads(dim);
  switch (dtype) {
    case DType::f32:
      embed_kernel<<<unsigned(batch), threads, 0, stream>>>(static_cast<const float*>(table), vocab, dim, ids, scale, x);
      break;
    case DType::bf16:
      embed_kernel<<<unsigned(batch), threads, 0, stream>>>(static_cast<const __nv_bfloat16*>(table), vocab, dim, ids,
                                                            scale, x);
      break;
    default: MGL_FAIL("decode_embed: tables are f32 or bf16, got ", dtype_name(dtype));
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
  norm_cema_kernel<<<grid, row_threads(pairs > dg ? pairs : dg), shared, stream>>>(args);
  MGL_CUDA_CHECK_LAUNCH();
}

void decode_advance(int32_t* position, int64_t chunk_size, Stream stream) {
  advance_kernel<<<1, 1, 0, stream>>>(position, int32_t(chunk_size));
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

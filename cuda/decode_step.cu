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

// Launch: grid (G, B), one block per (group, sequence); threads over the group's dg channels. The
// group's moments are block reductions (two passes: mean, then squared deviations, as the scan
// kernels of cuda/timestep_norm.cu compute them); every thread folds the state the same way and
// thread 0 stores it. The CEMA step of a channel runs its N modes in one thread.
__global__ void norm_cema_kernel(DecodeNormArgs a) {
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
    if (a.cema_h == nullptr) continue;
    C32* h = a.cema_h + (b * a.dim + c) * a.modes;
    float u = a.cema.omega[c] * y;
    for (int64_t m = 0; m < a.modes; ++m) {
      const int64_t i = c * a.modes + m;
      const C32 next = a.cema.q[i] * h[m] + a.cema.p[i] * y;
      h[m] = next;
      u += a.cema.gamma[i].re * next.re - a.cema.gamma[i].im * next.im;
    }
    a.cema_y[b * a.dim + c] = u;
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
  const dim3 grid(unsigned(args.groups), unsigned(args.batch));
  norm_cema_kernel<<<grid, row_threads(args.dim / args.groups), 0, stream>>>(args);
  MGL_CUDA_CHECK_LAUNCH();
}

void decode_advance(int32_t* position, int64_t chunk_size, Stream stream) {
  advance_kernel<<<1, 1, 0, stream>>>(position, int32_t(chunk_size));
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

// CEMA kernels (docs/megalodon.md §2.3): a chunked linear scan, forward and backward.
//
// Algorithm. For each (b, d, n) CEMA is the linear recurrence s_t = Q·s_{t-1} + P·u_t with a
// constant complex Q (|Q| < 1). We split time into chunks of kChunk = 32 steps and run three passes:
//   1. local:  every chunk, in parallel, runs the recurrence from a zero state; its end state e_c
//              is written to a `states` buffer [B, C, D, 16];
//   2. carry:  one thread per (b, d, n) walks the C = ⌈L/32⌉ chunks in order: the state entering
//              chunk c + 1 is Q^{len_c}·(state entering c) + e_c, with Q^{len_c} = exp(len_c·log Q)
//              taken directly (never by repeated multiplication); it overwrites e_c in place with
//              the state entering chunk c;
//   3. output: every chunk, in parallel, reruns its 32 steps from its true entering state and writes
//              the outputs.
// Why a scan rather than the FFT convolution of the official code: the recurrence is exact for any
// L (the official fused FFT stops at 16K), costs O(L) work instead of O(L log L), needs no padding
// to 2P and no saved spectra (scratch is the chunk states: 4 bytes per (b, t, d) with N = 16, plus
// per-span gradient partials), and an incoming state is just the initial value of the carry
// instead of a separate Vandermonde term. Rounding does not grow with L: every step multiplies
// the previous error by |Q| < 1, and the only powers are Q^len (len ≤ 32) obtained from exp().
// (What bounds agreement with an exact computation is the f32 coefficient itself: a relative error
// ε in q becomes about ε/(1 − |q|) in the output, for any f32 implementation.)
// Each thread of passes 1 and 3 owns one (b, d) and keeps its 16 modes in registers (N < 16 is
// padded with zero modes), so the sum over modes of the output needs no communication, and a
// warp reads 32 consecutive channels of one token: coalesced.
//
// Backward. The adjoint of a linear recurrence is the same recurrence run backwards in time with
// conjugated, transposed coefficients, so passes 1 and 2 give the adjoint entering each chunk. Write
// both directions in the form "output from the state *before* the update":
//   out_t = Re(Σ_n Γ_n·s) + skip·u_t,   then   s ← Q·s + P·u_t.
// Forward (time ascending):  u = x,  s = h_{t-1},  Q = q, P = p, Γ = γ·q, skip = omega + Σ_n p·Re γ
//   (because y_t = Re(γ(q h_{t-1} + p x_t)) + omega x_t); the carry starts at h_in, ends at h_out.
// Backward (time descending): u = dy, s = c_t = conj(q)·a_{t+1} where a_t = G_{h_t} is the
//   adjoint of h_t, so a_t = conj(γ)·dy_t + c_t and c_{t-1} = conj(q)·a_t:
//   Q = conj(q), P = conj(q·γ); the carry starts at G_{h_out} and ends at c_{-1} = conj(q)·a_0 =
//   G_{h_in}. The output dx_t = Σ_n p·Re a_t + omega·dy_t is not a pass of its own: the
//   parameter-gradient pass below has every a_t at hand and sums it there.
// The parameter gradients pair the forward state entering each step with the adjoint leaving it:
//   G_q = Σ a_t·conj(h_{t-1}),  G_γ = Σ dy_t·conj(h_t),  ∂ℓ/∂p = Σ x_t·Re a_t,  ∂ℓ/∂omega = Σ dy_t·x_t.
// A block takes (b, a span of 16 chunks, 16 channels) with a thread per (channel, mode); x and dy go
// through shared memory once for all 16 modes of a channel. For each chunk a thread recomputes the 33
// forward states from the saved entering state (kept in registers), then walks the chunk backwards
// from the saved adjoint, leaving p·Re a_t in shared memory, where the 16 modes of each (t, d) are
// summed, in mode order, into dx_t. Per-span partials are reduced over (b, span) in f64, then carried
// through the sigmoid/polar chain to the raw parameters (cema_mode_raw_grad, shared with the CPU reference).
// Nothing from the forward is saved for the backward except its inputs: the chunk states are
// recomputed (one more read of x).
#include <climits>
#include <type_traits>

#include "cuda/cema.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

constexpr int kChunk = 32;                 // time steps per chunk
constexpr int kModes = int(kCemaMaxModes);  // modes held in registers per channel
constexpr int kSpanChunks = 16;            // chunks per block in the parameter-gradient pass
constexpr int kCarryBatch = 32;            // chunk states a carry thread loads before using them
constexpr int kCarryThreads = 64;          // small blocks: B·D·N threads (16K at D 1024) reach every SM
constexpr int kScanThreads = 128;          // the register-heavy per-channel passes
using C32 = Complex<float>;

// One direction of the scan for one mode: out += Re(Γ·s) from the state before the update,
// then s ← Q·s + P·u.
struct ScanMode {
  C32 Q, P, Gamma, log_Q;
};

// The problem as the kernels see it: x or dy is [B, L, D]; chunk states are [B, C, D, kModes].
struct Grid {
  int64_t B, L, D, N, C;
  __host__ __device__ int64_t state_index(int64_t b, int64_t c, int64_t d, int64_t n) const {
    return ((b * C + c) * D + d) * kModes + n;
  }
  __host__ __device__ int64_t token_index(int64_t b, int64_t t, int64_t d) const { return (b * L + t) * D + d; }
  __device__ int64_t chunk_length(int64_t c) const { return L - c * kChunk < kChunk ? L - c * kChunk : kChunk; }
};

Grid make_grid(const CemaSizes& s) {
  return {s.batch, s.length, s.channels, s.modes, (s.length + kChunk - 1) / kChunk};
}

__device__ __forceinline__ int64_t global_thread() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }

// Blocks for one thread per item (these kernels give each thread one item, no grid-stride loop).
unsigned grid_for(int64_t items, int threads = kThreads) {
  const int64_t blocks = (items + threads - 1) / threads;
  MGL_CHECK(blocks <= int64_t(INT32_MAX), "cema (CUDA): ", items, " work items are more than one launch covers");
  return static_cast<unsigned>(blocks);
}

template <class T>
__device__ __forceinline__ float load(const T* p) {
  return to_float(*p);
}

// ---- coefficients ------------------------------------------------------------------------------------

// One thread per (d, n).
__global__ void coefficients_kernel(const float* alpha, const float* delta, const float* theta, const C32* gamma_raw,
                                    int64_t D, int64_t N, float* p, C32* q, C32* log_q, C32* gamma) {
  const int64_t i = global_thread();
  if (i >= D * N) return;
  const CemaMode<float> mode = cema_mode(alpha[i], delta[i], theta[i / N], gamma_raw[i], i % N, N);
  p[i] = mode.p;
  q[i] = mode.q;
  log_q[i] = mode.log_q;
  gamma[i] = mode.gamma;
}

// One thread per channel: the scan coefficients of both directions (backward may be null) and
// the skip weight omega + Σ_n p·Re γ.
__global__ void scan_modes_kernel(CemaCoefficientPointers c, int64_t D, int64_t N, ScanMode* forward,
                                  ScanMode* backward, float* skip) {
  const int64_t d = global_thread();
  if (d >= D) return;
  float total = c.omega[d];
  for (int64_t i = d * N; i < (d + 1) * N; ++i) {
    const float p = c.p[i];
    const C32 q = c.q[i], gamma = c.gamma[i];
    total += p * gamma.re;
    forward[i] = {q, C32(p), gamma * q, c.log_q[i]};
    if (backward) backward[i] = {conj(q), conj(q * gamma), C32(), conj(c.log_q[i])};  // no Γ: dx is not a pass
  }
  skip[d] = total;
}

// ---- the scan ------------------------------------------------------------------------------------------

// The scan coefficients of one channel in registers, zero for the padding modes n >= N.
struct ChannelScan {
  C32 Q[kModes], P[kModes], Gamma[kModes];
  __device__ ChannelScan(const ScanMode* modes, int64_t d, int64_t N) {
#pragma unroll
    for (int n = 0; n < kModes; ++n) {
      const bool live = n < N;
      Q[n] = live ? modes[d * N + n].Q : C32();
      P[n] = live ? modes[d * N + n].P : C32();
      Gamma[n] = live ? modes[d * N + n].Gamma : C32();
    }
  }
};

// The time step of the k-th step of chunk c in sweep order.
template <bool kReverse>
__device__ __forceinline__ int64_t step_time(const Grid& g, int64_t c, int64_t k) {
  return kReverse ? c * kChunk + g.chunk_length(c) - 1 - k : c * kChunk + k;
}

// The chunk's values of channel d in sweep order, every load issued before any is used: the scans are
// chains of dependent steps, so a load per step would cost a memory latency per step (measured: the
// parameter-gradient pass ran at 12 % of its warps active and 1 % of DRAM bandwidth, 9.6 ms at L = 32768,
// before this). Steps past the end of a short last chunk read its last token again and go unused.
template <bool kReverse, class T>
__device__ __forceinline__ void load_chunk(const T* u, const Grid& g, int64_t b, int64_t c, int64_t d,
                                           float (&out)[kChunk]) {
  const int64_t last = g.chunk_length(c) - 1;
#pragma unroll
  for (int k = 0; k < kChunk; ++k) {
    out[k] = load(u + g.token_index(b, step_time<kReverse>(g, c, k < last ? k : last), d));
  }
}

// Passes 1 and 3. One thread per (b, c, d), channels fastest, runs the steps of one chunk. Pass 1
// (kOutputs = false) starts from zero and writes the chunk's end state Σ_k Q^{len−1−k}·P·u_k: it walks
// s ← Q·s + u (Horner's rule for the sum without P, 4 FMAs per mode and step instead of 6) and
// multiplies by P once at the end; P is read there, not held through the walk, so pass 1 fits 4 blocks
// per SM (128 registers, no spills; ~165 before). Pass 3 starts from the entering state and writes
// out_t = Re(Σ_n Γ_n s_n) + skip·u_t; it runs in the forward only, where P = p is real, so it adds p·u
// to the real part alone and fits 3 blocks per SM (168 registers, no spills; 201–214 with a complex P).
template <class T, bool kReverse, bool kOutputs>
__global__ void __launch_bounds__(kScanThreads, kOutputs ? 3 : 4)
    scan_chunk_kernel(const T* u, const ScanMode* modes, const float* skip, Grid g, C32* states, T* out) {
  static_assert(!(kOutputs && kReverse), "outputs come from the forward sweep only (dx: the gradient pass)");
  const int64_t i = global_thread();
  if (i >= g.B * g.C * g.D) return;
  const int64_t d = i % g.D, c = (i / g.D) % g.C, b = i / (g.D * g.C);
  const ChannelScan m(modes, d, g.N);
  C32 s[kModes];
  if (kOutputs) {
#pragma unroll
    for (int n = 0; n < kModes; ++n) s[n] = states[g.state_index(b, c, d, n)];
  }
  const float skip_d = kOutputs ? skip[d] : 0.f;
  const int64_t length = g.chunk_length(c);
  float us[kChunk];
  load_chunk<kReverse>(u, g, b, c, d, us);
#pragma unroll
  for (int k = 0; k < kChunk; ++k) {
    if (k < length) {
      const float v = us[k];
      float o = skip_d * v;
#pragma unroll
      for (int n = 0; n < kModes; ++n) {
        if (kOutputs) {
          o += m.Gamma[n].re * s[n].re - m.Gamma[n].im * s[n].im;
          s[n] = m.Q[n] * s[n];
          s[n].re += m.P[n].re * v;  // the forward's P = p is real
        } else {
          s[n] = m.Q[n] * s[n] + v;
        }
      }
      if (kOutputs) out[g.token_index(b, step_time<kReverse>(g, c, k), d)] = from_float<T>(o);
    }
  }
  if (!kOutputs) {
#pragma unroll
    for (int n = 0; n < kModes; ++n) {
      const C32 P = n < g.N ? modes[d * g.N + n].P : C32();
      states[g.state_index(b, c, d, n)] = P * s[n];
    }
  }
}

// Pass 2. One thread per (b, d, n), modes fastest. Replaces each chunk's local end state by the
// state entering the chunk; `initial` (null = zero) enters the first chunk of the sweep, the state
// leaving the last one goes to `final` (if not null). Loads are issued kCarryBatch chunks ahead of
// their use, so the walk is not one memory latency per chunk.
template <bool kReverse>
__global__ void scan_carry_kernel(const ScanMode* modes, const C32* initial, Grid g, C32* states, C32* final) {
  const int64_t i = global_thread();
  if (i >= g.B * g.D * g.N) return;
  const int64_t n = i % g.N, d = (i / g.N) % g.D, b = i / (g.N * g.D);
  const C32 log_Q = modes[d * g.N + n].log_Q;
  const C32 decay_full = exp(log_Q * float(kChunk));  // Q^32
  const C32 decay_last = g.C > 0 ? exp(log_Q * float(g.chunk_length(g.C - 1))) : C32();
  C32 s = initial ? initial[i] : C32();
  for (int64_t k0 = 0; k0 < g.C; k0 += kCarryBatch) {
    C32 local[kCarryBatch];
#pragma unroll
    for (int j = 0; j < kCarryBatch; ++j) {
      const int64_t k = k0 + j, c = kReverse ? g.C - 1 - k : k;
      if (k < g.C) local[j] = states[g.state_index(b, c, d, n)];
    }
#pragma unroll
    for (int j = 0; j < kCarryBatch; ++j) {
      const int64_t k = k0 + j, c = kReverse ? g.C - 1 - k : k;
      if (k < g.C) {
        states[g.state_index(b, c, d, n)] = s;
        s = (c == g.C - 1 ? decay_last : decay_full) * s + local[j];
      }
    }
  }
  if (final) final[i] = s;
}

// ---- parameter gradients ------------------------------------------------------------------------------

// One block per (b, span of kSpanChunks chunks, tile of kTileChannels channels), a thread per (channel,
// mode slot): the 16 modes of a channel share one load of x and dy. Each chunk's x and dy tiles go to
// shared memory once for the whole block; the next chunk's tile (and its two saved states) is fetched
// into registers while the current chunk is computed, so one __syncthreads per chunk suffices with two
// buffers (a buffer is written again only after every thread has passed the barrier that follows its
// last read). A warp is 16 channels × 2 modes: its shared-memory reads are 16 consecutive words,
// broadcast to the second mode, without bank conflicts. Threads of padding modes (n >= N) or channels
// past D load and synchronise but accumulate nothing. Per chunk: the forward states h_{t0-1} .. h_{t1-1}
// from the saved entering state (registers), then the chunk backwards from the saved adjoint c_{t1-1},
// accumulating G_q, G_γ, ∂ℓ/∂p and (threads of mode 0) ∂ℓ/∂omega. Two blocks per SM (16 warps) cap the
// registers at 128: ptxas then reads x and dy from shared memory again in the backward walk instead of
// holding all 32 of each chunk (148 registers without the cap, one block per SM; 122 with it, no spills).
constexpr int kTileChannels = 16;
constexpr int kGradThreads = kTileChannels * kModes;
constexpr int kTileLoads = kChunk * kTileChannels / kGradThreads;  // tile values each thread loads
static_assert(kChunk * kTileChannels % kGradThreads == 0, "a chunk's tile splits evenly over the threads");

// A chunk's share of one thread: its values of the x and dy tiles (zero past L or D) and the chunk's
// saved forward and backward states of the thread's own (channel, mode).
struct ChunkFetch {
  float x[kTileLoads], dy[kTileLoads];
  C32 forward_state, backward_state;
};

template <class T>
__device__ __forceinline__ ChunkFetch fetch_chunk(const T* x, const T* dy, const Grid& g, int64_t b, int64_t c,
                                                  int64_t d0, bool live, int64_t state, const C32* forward_states,
                                                  const C32* backward_states) {
  ChunkFetch f;
#pragma unroll
  for (int i = 0; i < kTileLoads; ++i) {
    const int v = threadIdx.x + i * kGradThreads;
    const int64_t t = c * kChunk + v / kTileChannels, d = d0 + v % kTileChannels;
    const bool inside = t < g.L && d < g.D;
    f.x[i] = inside ? load(x + g.token_index(b, t, d)) : 0.f;
    f.dy[i] = inside ? load(dy + g.token_index(b, t, d)) : 0.f;
  }
  f.forward_state = live ? forward_states[state] : C32();
  f.backward_state = live ? backward_states[state] : C32();
  return f;
}

template <class T>
__global__ void __launch_bounds__(kGradThreads, 2)
    parameter_grads_kernel(const T* x, const T* dy, CemaCoefficientPointers coef, Grid g, int64_t spans,
                           const C32* forward_states, const C32* backward_states, T* dx,
                           CemaModeGrad<float>* mode_partials, float* omega_partials) {
  __shared__ float x_tile[2][kChunk][kTileChannels], dy_tile[2][kChunk][kTileChannels];
  __shared__ float dx_terms[kChunk][kModes][kTileChannels];  // p·Re a_t of each (step, mode, channel)
  const int64_t tiles = (g.D + kTileChannels - 1) / kTileChannels;
  const int64_t tile = blockIdx.x % tiles, span = (blockIdx.x / tiles) % spans, b = blockIdx.x / (tiles * spans);
  const int j = threadIdx.x % kTileChannels, n = threadIdx.x / kTileChannels;
  const int64_t d0 = tile * kTileChannels, d = d0 + j;
  const bool live = d < g.D && n < g.N;
  const int64_t mode = d * g.N + n;
  const float p = live ? coef.p[mode] : 0.f;
  const C32 q = live ? coef.q[mode] : C32(), gamma = live ? coef.gamma[mode] : C32();
  CemaModeGrad<float> acc;
  float d_omega = 0.f;
  const int64_t c_begin = span * kSpanChunks, c_end = min(g.C, c_begin + kSpanChunks);
  ChunkFetch next = fetch_chunk(x, dy, g, b, c_begin, d0, live, g.state_index(b, c_begin, d, n), forward_states,
                                backward_states);
  for (int64_t c = c_begin; c < c_end; ++c) {
    const int buffer = int(c - c_begin) & 1;
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int v = threadIdx.x + i * kGradThreads;
      x_tile[buffer][v / kTileChannels][v % kTileChannels] = next.x[i];
      dy_tile[buffer][v / kTileChannels][v % kTileChannels] = next.dy[i];
    }
    C32 h[kChunk + 1];  // h[k] = h_{t0+k-1}
    h[0] = next.forward_state;
    C32 carry = next.backward_state;  // c_{t1-1}: adjoint from the future
    __syncthreads();
    if (c + 1 < c_end) {
      next = fetch_chunk(x, dy, g, b, c + 1, d0, live, g.state_index(b, c + 1, d, n), forward_states,
                         backward_states);
    }
    const int64_t length = g.chunk_length(c);
    const float(&xs)[kChunk][kTileChannels] = x_tile[buffer];
    const float(&dys)[kChunk][kTileChannels] = dy_tile[buffer];
    if (live) {
#pragma unroll
      for (int k = 0; k < kChunk; ++k) {
        if (k < length) h[k + 1] = q * h[k] + p * xs[k][j];
      }
#pragma unroll
      for (int k = kChunk - 1; k >= 0; --k) {
        if (k < length) {
          const float g_t = dys[k][j], x_t = xs[k][j];
          const C32 a = conj(gamma) * g_t + carry;  // G_{h_t}
          acc.q += a * conj(h[k]);
          acc.gamma += g_t * conj(h[k + 1]);
          acc.p += x_t * a.re;
          d_omega += g_t * x_t;
          dx_terms[k][n][j] = p * a.re;
          carry = conj(q) * a;
        }
      }
    }
    // dx_t = omega·dy_t + Σ_n p·Re a_t over the live modes, in mode order; the tile's values are
    // spread over the threads as for the loads. The next chunk writes dx_terms only after the
    // barrier at its start, which every thread reaches after these reads.
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int v = threadIdx.x + i * kGradThreads, k = v / kTileChannels, jj = v % kTileChannels;
      const int64_t t = c * kChunk + k, dd = d0 + jj;
      if (k < length && dd < g.D) {
        float sum = coef.omega[dd] * dys[k][jj];
        for (int64_t m = 0; m < g.N; ++m) sum += dx_terms[k][m][jj];
        dx[g.token_index(b, t, dd)] = from_float<T>(sum);
      }
    }
  }
  if (!live) return;
  const int64_t row = b * spans + span;
  mode_partials[row * g.D * g.N + mode] = acc;
  if (n == 0) omega_partials[row * g.D + d] = d_omega;
}

// One thread per (d, n): sums the partial rows in f64 and carries the total to the raw parameters.
__global__ void finish_mode_grads_kernel(const float* alpha, const float* delta, const float* theta,
                                         const CemaModeGrad<float>* mode_partials, int64_t rows, int64_t D, int64_t N,
                                         CemaParameterGradPointers grads, float* theta_parts) {
  const int64_t i = global_thread();
  if (i >= D * N) return;
  CemaModeGrad<double> total;
  for (int64_t r = 0; r < rows; ++r) {
    const CemaModeGrad<float> part = mode_partials[r * D * N + i];
    total.q += Complex<double>(part.q);
    total.gamma += Complex<double>(part.gamma);
    total.p += part.p;
  }
  const CemaRawGrad<double> raw = cema_mode_raw_grad<double>(alpha[i], delta[i], theta[i / N], i % N, N, total);
  grads.alpha[i] = float(raw.alpha);
  grads.delta[i] = float(raw.delta);
  grads.gamma[i] = C32(raw.gamma);
  theta_parts[i] = float(raw.theta);
}

// One thread per channel: d theta = Σ_n of the modes' shares, d omega = Σ of the partial rows.
__global__ void finish_channel_grads_kernel(const float* theta_parts, const float* omega_partials, int64_t rows,
                                            int64_t D, int64_t N, CemaParameterGradPointers grads) {
  const int64_t d = global_thread();
  if (d >= D) return;
  double theta = 0.0, omega = 0.0;
  for (int64_t n = 0; n < N; ++n) theta += theta_parts[d * N + n];
  for (int64_t r = 0; r < rows; ++r) omega += omega_partials[r * D + d];
  grads.theta[d] = float(theta);
  grads.omega[d] = float(omega);
}

// ---- decoding ----------------------------------------------------------------------------------------

// One thread per (b, d); any N (the state lives in global memory, one token at a time).
template <class T>
__global__ void step_kernel(const T* x, CemaCoefficientPointers c, int64_t B, int64_t D, int64_t N, C32* h, T* y) {
  const int64_t i = global_thread();
  if (i >= B * D) return;
  const int64_t d = i % D;
  const float v = load(x + i);
  float out = c.omega[d] * v;
  for (int64_t n = 0; n < N; ++n) {
    const C32 next = c.q[d * N + n] * h[i * N + n] + c.p[d * N + n] * v;
    h[i * N + n] = next;
    out += c.gamma[d * N + n].re * next.re - c.gamma[d * N + n].im * next.im;
  }
  y[i] = from_float<T>(out);
}

// ---- host side -------------------------------------------------------------------------------------------

// Scratch arrays of one call, carved from one allocation (a null base only measures).
struct Workspace {
  ScanMode* forward_modes = nullptr;
  ScanMode* backward_modes = nullptr;
  float* skip = nullptr;
  C32* forward_states = nullptr;
  C32* backward_states = nullptr;
  CemaModeGrad<float>* mode_partials = nullptr;
  float* omega_partials = nullptr;
  float* theta_parts = nullptr;
  int64_t bytes = 0;
};

int64_t span_count(const Grid& g) { return (g.C + kSpanChunks - 1) / kSpanChunks; }

Workspace carve(const Grid& g, bool backward, void* base) {
  Workspace w;
  char* bytes = static_cast<char*>(base);
  auto take = [&](auto*& pointer, int64_t count) {
    using U = std::remove_reference_t<decltype(*pointer)>;
    w.bytes = (w.bytes + 255) / 256 * 256;
    pointer = bytes ? reinterpret_cast<U*>(bytes + w.bytes) : nullptr;
    w.bytes += count * int64_t(sizeof(U));
  };
  const int64_t states = g.B * g.C * g.D * kModes;
  take(w.forward_modes, g.D * g.N);
  take(w.skip, g.D);
  take(w.forward_states, states);
  if (backward) {
    const int64_t rows = g.B * span_count(g);
    take(w.backward_modes, g.D * g.N);
    take(w.backward_states, states);
    take(w.mode_partials, rows * g.D * g.N);
    take(w.omega_partials, rows * g.D);
    take(w.theta_parts, g.D * g.N);
  }
  return w;
}

template <class F>
void dispatch_activation(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(__nv_bfloat16{}); return;
    default: MGL_FAIL("cema (CUDA): activations must be f32 or bf16, got ", dtype_name(dtype));
  }
}

// Passes 1 and 2 of one sweep: the state entering every chunk; `final` may be null.
template <bool kReverse, class T>
void run_states(const T* u, const ScanMode* modes, const C32* initial, const Grid& g, C32* states, C32* final,
                Stream stream) {
  const int64_t chunk_threads = g.B * g.C * g.D;
  if (chunk_threads > 0) {
    scan_chunk_kernel<T, kReverse, false>
        <<<grid_for(chunk_threads, kScanThreads), kScanThreads, 0, stream>>>(u, modes, nullptr, g, states, nullptr);
    MGL_CUDA_CHECK_LAUNCH();
  }
  const int64_t mode_threads = g.B * g.D * g.N;
  if (mode_threads > 0) {
    scan_carry_kernel<kReverse>
        <<<grid_for(mode_threads, kCarryThreads), kCarryThreads, 0, stream>>>(modes, initial, g, states, final);
    MGL_CUDA_CHECK_LAUNCH();
  }
}

void check_sizes(const CemaSizes& s) {
  MGL_CHECK(s.modes >= 1 && s.modes <= kCemaMaxModes, "cema (CUDA): N = ", s.modes, " modes; the kernels hold 1..",
            kCemaMaxModes, " modes per channel in registers");
}

void build_scan_modes(const CemaCoefficientPointers& c, const Grid& g, const Workspace& w, bool backward,
                      Stream stream) {
  if (g.D == 0) return;
  scan_modes_kernel<<<grid_for(g.D), kThreads, 0, stream>>>(c, g.D, g.N, w.forward_modes,
                                                              backward ? w.backward_modes : nullptr, w.skip);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void cema_coefficients(const CemaCoefficientsArgs& a, Stream stream) {
  const int64_t count = a.channels * a.modes;
  if (count == 0) return;
  coefficients_kernel<<<grid_for(count), kThreads, 0, stream>>>(a.alpha, a.delta, a.theta, a.gamma_raw, a.channels,
                                                                  a.modes, a.p, a.q, a.log_q, a.gamma);
  MGL_CUDA_CHECK_LAUNCH();
}

int64_t cema_forward_workspace_bytes(const CemaSizes& sizes) { return carve(make_grid(sizes), false, nullptr).bytes; }
int64_t cema_backward_workspace_bytes(const CemaSizes& sizes) { return carve(make_grid(sizes), true, nullptr).bytes; }

void cema_forward(const CemaForwardArgs& a, Stream stream) {
  check_sizes(a.sizes);
  const Grid g = make_grid(a.sizes);
  const Workspace w = carve(g, false, a.workspace);
  build_scan_modes(a.coefficients, g, w, false, stream);
  dispatch_activation(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    run_states<false>(x, w.forward_modes, a.h_in, g, w.forward_states, a.h_out, stream);
    const int64_t chunk_threads = g.B * g.C * g.D;
    if (chunk_threads > 0) {
      scan_chunk_kernel<T, false, true><<<grid_for(chunk_threads, kScanThreads), kScanThreads, 0, stream>>>(
          x, w.forward_modes, w.skip, g, w.forward_states, static_cast<T*>(a.y));
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
}

void cema_backward(const CemaBackwardArgs& a, Stream stream) {
  check_sizes(a.sizes);
  const Grid g = make_grid(a.sizes);
  const Workspace w = carve(g, true, a.workspace);
  build_scan_modes(a.coefficients, g, w, true, stream);
  const int64_t spans = span_count(g), rows = g.B * spans;
  dispatch_activation(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(a.x);
    const T* dys = static_cast<const T*>(a.dy);
    // Forward states entering each chunk (recomputed), then the adjoint entering each chunk from the
    // future (G_{h_in} is where the reverse carry ends); dx comes with the parameter gradients.
    run_states<false>(xs, w.forward_modes, a.h_in, g, w.forward_states, nullptr, stream);
    run_states<true>(dys, w.backward_modes, a.g_out, g, w.backward_states, a.h_in ? a.d_h_in : nullptr, stream);
    const int64_t blocks = rows * ((g.D + kTileChannels - 1) / kTileChannels);
    if (blocks > 0) {
      parameter_grads_kernel<T><<<grid_for(blocks * kGradThreads, kGradThreads), kGradThreads, 0, stream>>>(
          xs, dys, a.coefficients, g, spans, w.forward_states, w.backward_states, static_cast<T*>(a.dx),
          w.mode_partials, w.omega_partials);
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
  if (g.D == 0) return;
  finish_mode_grads_kernel<<<grid_for(g.D * g.N), kThreads, 0, stream>>>(a.alpha, a.delta, a.theta, w.mode_partials,
                                                                           rows, g.D, g.N, a.grads, w.theta_parts);
  MGL_CUDA_CHECK_LAUNCH();
  finish_channel_grads_kernel<<<grid_for(g.D), kThreads, 0, stream>>>(w.theta_parts, w.omega_partials, rows, g.D,
                                                                        g.N, a.grads);
  MGL_CUDA_CHECK_LAUNCH();
}

void cema_step(const CemaStepArgs& a, Stream stream) {
  const int64_t count = a.batch * a.channels;
  if (count == 0) return;
  dispatch_activation(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    step_kernel<T><<<grid_for(count), kThreads, 0, stream>>>(static_cast<const T*>(a.x), a.coefficients, a.batch,
                                                               a.channels, a.modes, a.h, static_cast<T*>(a.y));
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

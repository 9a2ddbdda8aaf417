// CEMA kernels (docs/megalodon.md §2.3): a chunked linear scan, forward and backward.
//
// Algorithm. For each (b, d, n) CEMA is the linear recurrence s_t = Q·s_{t-1} + P·u_t with a constant complex
// Q (|Q| < 1). Time is cut into chunks of kChunk = 32 steps and the chunks into groups of G chunks (the forward:
// cema_group_chunks, up to 8; the backward: G = 1, since its gradient pass reads a state per chunk). Three passes:
//   1. local:  every group, in parallel, runs from a zero state; its end state e_k is written to a `states`
//              buffer [B, groups, D, 16];
//   2. carry:  one thread per (b, d, n) walks the groups in order: the state entering group k + 1 is
//              Q^{len_k}·(state entering k) + e_k, with Q^{len_k} = exp(len_k·log Q) taken directly (never by
//              repeated multiplication); it overwrites e_k in place with the state entering group k;
//   3. output: (the forward) every group, in parallel, walks its chunks from its true entering state and
//              writes the outputs.
// Inside a chunk, passes 1 and 3 use the matrix form of cuda/cema.h: with the powers Z[j] = q^j (j = 0..32) of
// a table built once per call (`tables_kernel`, from exp(j·log q)), a chunk's end state from its inputs is
// A = Σ_i Z[T-1-i]·x_i (2 FMAs per mode and step), and its outputs are a 32-tap convolution with the channel's
// real kernel K plus the entering state's term Re Σ_n Z_n[k+1]·γ_n·h_n (16.5 FMAs per token on average plus 2
// per mode): the forward does 114 FMAs per token and channel, where walking each mode step by step did 176.
// Pass 3 gets the state entering each next chunk of its group from the same table rows (g ← Z[32]·g + γ·p·A):
// longer groups write and carry fewer states (the forward at L = 32K: 64 MiB instead of 512) for the price of A
// once more in G − 1 of G chunks. docs/perf.md ("CEMA step 3") has the FMA, byte and shared-memory counts.
// Why a scan rather than the FFT convolution of the official code: the recurrence is exact for any
// L (the official fused FFT stops at 16K), costs O(L) work instead of O(L log L), needs no padding
// to 2P and no saved spectra (scratch is the states: at most 4 bytes per (b, t, d) with N = 16, plus
// per-span gradient partials), and an incoming state is just the initial value of the carry
// instead of a separate Vandermonde term. Rounding does not grow with L: every step multiplies
// the previous error by |Q| < 1, and the only powers are Q^len (len ≤ 256) obtained from exp().
// (What bounds agreement with an exact computation is the f32 coefficient itself: a relative error
// ε in q becomes about ε/(1 − |q|) in the output, for any f32 implementation.)
// N < 16 is padded with zero modes (zero powers and weights), so every kernel holds 16 mode slots.
//
// Backward. The adjoint of a linear recurrence is the same recurrence run backwards in time with conjugated
// coefficients. With a_t = G_{h_t} the adjoint of h_t and c_t = conj(q)·a_{t+1} what reaches h_t from later,
//   a_t = conj(γ)·dy_t + c_t,   c_{t-1} = conj(q)·a_t = conj(q)·c_t + conj(q·γ)·dy_t,
// so c is the state of a sweep in descending time with u = dy, Q = conj(q) (powers conj(Z)), P = conj(q·γ):
// passes 1 and 2 of that sweep give the adjoint entering every chunk from the future; its carry starts at
// G_{h_out} and ends at c_{-1} = G_{h_in}. The forward states entering every chunk are recomputed the same way
// (one more read of x: nothing from the forward is saved but its inputs). dx_t = Σ_n p·Re a_t + omega·dy_t
// is not a pass of its own: the parameter-gradient pass below has every a_t at hand and sums it there.
// The parameter gradients pair the forward state entering each step with the adjoint leaving it:
//   G_q = Σ a_t·conj(h_{t-1}),  G_γ = Σ dy_t·conj(h_t),  ∂ℓ/∂p = Σ x_t·Re a_t,  ∂ℓ/∂omega = Σ dy_t·x_t.
// A block takes (b, a span of 16 chunks, 16 channels) with a thread per (channel, pair of modes); x and dy go
// through shared memory once for all 16 modes of a channel. For each half of a chunk a thread recomputes the
// forward states of its two modes from the saved entering state (registers), then walks the half backwards
// from the saved adjoint (cema_state_step and cema_adjoint_step, shared with the CPU reference), leaving
// p·Re a_t of its pair in shared memory, where the pairs of each (t, d) are summed, in pair order, into dx_t.
// Per-span partials are reduced over (b, span) in f64, then carried through the sigmoid/polar chain to the raw
// parameters (cema_mode_raw_grad, shared with the CPU reference).
#include <climits>
#include <type_traits>

#include "cuda/cema.h"
#include "cuda/common.cuh"

namespace mgl::cuda {

namespace {

constexpr int kChunk = int(kCemaChunk);     // time steps per chunk
constexpr int kModes = int(kCemaMaxModes);  // mode slots per channel
constexpr int kSpanChunks = 16;             // chunks per block in the parameter-gradient pass
constexpr int kCarryBatch = 32;             // states a carry thread loads before using them
constexpr int kCarryThreads = 64;           // small blocks: B·D·N threads (16K at D 1024) reach every SM
using C32 = Complex<float>;

// The problem as the kernels see it: x or dy is [B, L, D]; states are [B, groups, D, kModes], one per group
// of G chunks.
struct Grid {
  int64_t B, L, D, N, C, G, groups;
  __host__ __device__ int64_t state_index(int64_t b, int64_t k, int64_t d, int64_t n) const {
    return ((b * groups + k) * D + d) * kModes + n;
  }
  __host__ __device__ int64_t token_index(int64_t b, int64_t t, int64_t d) const { return (b * L + t) * D + d; }
  __device__ int64_t chunk_length(int64_t c) const { return L - c * kChunk < kChunk ? L - c * kChunk : kChunk; }
  __device__ int64_t group_length(int64_t k) const {
    return L - k * G * kChunk < G * kChunk ? L - k * G * kChunk : G * kChunk;
  }
};

Grid make_grid(const CemaSizes& s, int64_t G) {
  const int64_t C = (s.length + kChunk - 1) / kChunk;
  return {s.batch, s.length, s.channels, s.modes, C, G, (C + G - 1) / G};
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

// A channel's table for the matrix form (cuda/cema.h), zero for the padding modes n >= N. Its 16 bytes of
// padding make its size 16 mod 128 bytes: the tables of 8 consecutive channels in shared memory start in 8
// different groups of 4 banks, so the output pass reads a 16-byte piece of each in one wavefront.
struct alignas(16) ChannelTable {
  C32 power[kChunk + 1][kModes];  // Z_n[j] = q_n^j
  C32 gamma[kModes];              // γ_n
  C32 gamma_p[kModes];            // γ_n·p_n
  float taps[kChunk];             // K[j]
  float pad[4];
};
static_assert(sizeof(ChannelTable) % 128 == 16, "consecutive tables must start 16 bytes apart modulo 128");
constexpr int kTableRows = kChunk + 2;  // the table kernel's threads per channel

// One thread per (d, row): rows 0..kChunk are the powers Z_n[j] of the channel's modes and (j < kChunk) the
// tap K[j]; the last row writes γ, γ·p and the padding (the output pass copies whole tables).
__global__ void tables_kernel(CemaCoefficientPointers c, int64_t D, int64_t N, ChannelTable* tables) {
  const int64_t i = global_thread();
  if (i >= D * kTableRows) return;
  const int64_t d = i / kTableRows, j = i % kTableRows;
  ChannelTable& table = tables[d];
  if (j <= kChunk) {
    for (int n = 0; n < kModes; ++n) table.power[j][n] = n < N ? cema_power(c.log_q[d * N + n], j) : C32();
    if (j < kChunk) table.taps[j] = cema_tap(j, c.omega[d], c.p + d * N, c.gamma + d * N, table.power[j], N);
    return;
  }
  for (int n = 0; n < kModes; ++n) {
    const bool live = n < N;
    table.gamma[n] = live ? c.gamma[d * N + n] : C32();
    table.gamma_p[n] = live ? c.gamma[d * N + n] * c.p[d * N + n] : C32();
  }
  for (float& pad : table.pad) pad = 0.f;
}

// ---- pass 1: local --------------------------------------------------------------------------------------

// A block owns (b, a span of chunks, kLocalChannels channels) with a thread per (channel, mode slot), as the
// gradient pass: the mode's 32 powers stay in registers for the whole span, and each chunk's inputs go to
// shared memory once for the 16 modes of a channel. A warp is 2 channels × 16 modes, so its 16-byte reads of
// 4 inputs have 2 distinct addresses (one wavefront) and feed 8 FMAs each; the group states leave as 256
// contiguous bytes per warp. A chunk's window is right-aligned (cema_chunk_sum: a short last chunk's steps end
// it, zeros before them) and in sweep order; the next chunk's window is fetched into registers while the
// current one is summed (two buffers, one barrier per chunk, as the gradient pass). A group's state is Horner's
// rule over its chunks without P (s ← Z[len]·s + A) times P once at its end. The reverse sweep (the backward's
// adjoint) uses G = 1: each chunk is its own group, so the order of the span's chunks does not matter.
constexpr int kLocalChannels = 16;
constexpr int kLocalThreads = kLocalChannels * kModes;
constexpr int kWindowLoads = kChunk * kLocalChannels / kLocalThreads;  // window values each thread fetches
constexpr int kWindowStride = kChunk + 4;  // 16-byte aligned rows; the 2 channels of a warp in other banks
constexpr int64_t kLocalMaxSpan = 128, kLocalMinBlocks = 512;
static_assert(kChunk * kLocalChannels % kLocalThreads == 0, "a chunk's window splits evenly over the threads");

// Chunks per block: the longest span (a multiple of G, at most kLocalMaxSpan) that still leaves kLocalMinBlocks
// blocks; a block reads its threads' powers once, so longer spans read them less often.
int64_t local_span_chunks(const Grid& g) {
  const int64_t tiles = (g.D + kLocalChannels - 1) / kLocalChannels;
  int64_t span = g.G;
  while (span < kLocalMaxSpan && g.B * tiles * ((g.C + 2 * span - 1) / (2 * span)) >= kLocalMinBlocks) span *= 2;
  return span;
}

// The sweep's powers: those of q forward, of conj(q) in reverse.
template <bool kReverse>
__device__ __forceinline__ C32 sweep_power(C32 z) {
  return kReverse ? conj(z) : z;
}

// This thread's share of chunk c's windows: value v = k·kLocalChannels + ch is window step k of channel
// d0 + ch, which is sweep step k − (kChunk − len): time c·32 + k − (kChunk − len) forward, c·32 + 31 − k in
// reverse (the reverse sweep's step i of chunk c is time c·32 + len − 1 − i).
template <bool kReverse, class T>
__device__ __forceinline__ void fetch_window(const T* u, const Grid& g, int64_t b, int64_t c, int64_t d0,
                                             float (&out)[kWindowLoads]) {
  const int64_t shift = kChunk - g.chunk_length(c);
#pragma unroll
  for (int i = 0; i < kWindowLoads; ++i) {
    const int v = threadIdx.x + i * kLocalThreads, k = v / kLocalChannels;
    const int64_t d = d0 + v % kLocalChannels;
    const int64_t t = kReverse ? c * kChunk + kChunk - 1 - k : c * kChunk + k - shift;
    out[i] = k >= shift && d < g.D ? load(u + g.token_index(b, t, d)) : 0.f;
  }
}

template <class T, bool kReverse>
__global__ void __launch_bounds__(kLocalThreads, 2)
    local_pass_kernel(const T* u, const ChannelTable* tables, CemaCoefficientPointers coef, Grid g,
                      int64_t span_chunks, C32* states) {
  __shared__ alignas(16) float windows[2][kLocalChannels][kWindowStride];
  const int64_t tiles = (g.D + kLocalChannels - 1) / kLocalChannels, spans = (g.C + span_chunks - 1) / span_chunks;
  const int64_t tile = blockIdx.x % tiles, span = (blockIdx.x / tiles) % spans, b = blockIdx.x / (tiles * spans);
  const int n = threadIdx.x % kModes, j = threadIdx.x / kModes;
  const int64_t d0 = tile * kLocalChannels, d = d0 + j, mode = d * g.N + n;
  const bool live = d < g.D && n < g.N;
  C32 z[kChunk];
#pragma unroll
  for (int k = 0; k < kChunk; ++k) z[k] = live ? sweep_power<kReverse>(tables[d].power[k][n]) : C32();
  const C32 decay_full = live ? sweep_power<kReverse>(tables[d].power[kChunk][n]) : C32();
  const C32 decay_last = live ? sweep_power<kReverse>(tables[d].power[g.chunk_length(g.C - 1)][n]) : C32();
  const C32 P = !live ? C32() : kReverse ? conj(coef.q[mode] * coef.gamma[mode]) : C32(coef.p[mode]);
  const int64_t c_begin = span * span_chunks, c_end = min(g.C, c_begin + span_chunks);
  float next[kWindowLoads];
  fetch_window<kReverse>(u, g, b, c_begin, d0, next);
  C32 s;
  int64_t group = c_begin / g.G, group_end = c_begin + g.G;  // chunk c's group and where it ends, counted per chunk
  for (int64_t c = c_begin; c < c_end; ++c) {
    const int buffer = int(c - c_begin) & 1;
#pragma unroll
    for (int i = 0; i < kWindowLoads; ++i) {
      const int v = threadIdx.x + i * kLocalThreads;
      windows[buffer][v % kLocalChannels][v / kLocalChannels] = next[i];
    }
    __syncthreads();
    if (c + 1 < c_end) fetch_window<kReverse>(u, g, b, c + 1, d0, next);
    s = (c == g.C - 1 ? decay_last : decay_full) * s + cema_chunk_sum(z, windows[buffer][j]);
    if (c + 1 == group_end || c == g.C - 1) {
      if (d < g.D) states[g.state_index(b, group, d, n)] = P * s;  // zero for the padding modes
      s = C32();
      ++group;
      group_end += g.G;
    }
  }
}

// ---- pass 2: carry --------------------------------------------------------------------------------------

// One thread per (b, d, n), modes fastest. Replaces each group's local end state by the state entering the
// group; `initial` (null = zero) enters the first group of the sweep, the state leaving the last one goes to
// `final` (if not null). Loads are issued kCarryBatch groups ahead of their use, so the walk is not one memory
// latency per group.
template <bool kReverse>
__global__ void scan_carry_kernel(const C32* log_q, const C32* initial, Grid g, C32* states, C32* final) {
  const int64_t i = global_thread();
  if (i >= g.B * g.D * g.N) return;
  const int64_t n = i % g.N, d = (i / g.N) % g.D, b = i / (g.N * g.D);
  const C32 log_Q = sweep_power<kReverse>(log_q[d * g.N + n]);
  const C32 decay_full = cema_power(log_Q, g.G * kChunk);
  const C32 decay_last = g.groups > 0 ? cema_power(log_Q, g.group_length(g.groups - 1)) : C32();
  C32 s = initial ? initial[i] : C32();
  for (int64_t k0 = 0; k0 < g.groups; k0 += kCarryBatch) {
    C32 local[kCarryBatch];
#pragma unroll
    for (int j = 0; j < kCarryBatch; ++j) {
      const int64_t k = k0 + j, group = kReverse ? g.groups - 1 - k : k;
      if (k < g.groups) local[j] = states[g.state_index(b, group, d, n)];
    }
#pragma unroll
    for (int j = 0; j < kCarryBatch; ++j) {
      const int64_t k = k0 + j, group = kReverse ? g.groups - 1 - k : k;
      if (k < g.groups) {
        states[g.state_index(b, group, d, n)] = s;
        s = (group == g.groups - 1 ? decay_last : decay_full) * s + local[j];
      }
    }
  }
  if (final) final[i] = s;
}

// ---- pass 3: outputs (the forward) ------------------------------------------------------------------------

// A thread walks one (b, channel, group) with all 16 modes: the state term's sum over modes stays inside the
// thread (a sum across lanes would cost a shuffle or a shared-memory round trip per mode and token, more than
// the 2 FMAs it adds). Its registers hold the chunk's 32 inputs, the 32 taps, g_n = γ_n·h_n and the chunk's
// A_n; the table rows come from shared memory. A block is kOutputChannels channels × 16 groups, a warp 8
// channels × 4 groups: an LDS.128 of a row has 8 distinct addresses in 8 bank groups (ChannelTable's padding),
// one wavefront broadcast to the 4 lanes of each channel; x loads and y stores touch 4 lines per warp.
// 3 blocks per SM (12 warps) allow 168 registers.
constexpr int kOutputChannels = 8;
constexpr int kOutputThreads = 128;
constexpr int kOutputGroups = kOutputThreads / kOutputChannels;  // walks per block

// The chunk's inputs of channel d, every load issued before any is used (measured on the earlier scans: a
// load per step costs a memory latency per step). Steps past the end of a short last chunk read its last
// token again and go unused (outputs are causal).
template <class T>
__device__ __forceinline__ void load_chunk(const T* u, const Grid& g, int64_t b, int64_t c, int64_t d,
                                           float (&out)[kChunk]) {
  const T* step = u + g.token_index(b, c * kChunk, d);
  const int64_t last = g.chunk_length(c) - 1;
#pragma unroll
  for (int k = 0; k < kChunk; ++k) {
    out[k] = load(step);
    if (k < last) step += g.D;
  }
}

// One chunk's outputs from g_n = γ_n·h_n of its entering state (the first `length` of them go to out, out + stride,
// ...). Row Z[j] of the table serves output j − 1 (cema_chunk_output) and, when the next chunk of the group needs
// this one's end state (kNext), the term j of every mode's A (cema_chunk_sum, accumulated row by row); then
// g ← Z[32]·g + γ·p·A is g of the next chunk. Computing each output whole before its guarded store keeps the
// unrolled code one block for the scheduler (168 registers; 247 when each output was computed under its guard).
template <bool kNext, class T>
__device__ __forceinline__ void chunk_outputs(const ChannelTable& table, const float (&taps)[kChunk],
                                              const float (&u)[kChunk], C32 (&gs)[kModes], int64_t length, T* out,
                                              int64_t stride) {
  C32 a[kModes];
#pragma unroll
  for (int j = 0; j <= kChunk; ++j) {
    const C32* row = table.power[j];
    if (kNext && j < kChunk) {
#pragma unroll
      for (int n = 0; n < kModes; ++n) a[n] += row[n] * u[kChunk - 1 - j];
    }
    if (j > 0) {
      const float y = cema_chunk_output(j - 1, taps, u, row, gs, kModes);
      if (j - 1 < length) *out = from_float<T>(y);
      out += stride;
    }
  }
  if (kNext) {
#pragma unroll
    for (int n = 0; n < kModes; ++n) gs[n] = table.power[kChunk][n] * gs[n] + table.gamma_p[n] * a[n];
  }
}

template <class T>
__global__ void __launch_bounds__(kOutputThreads, 3)
    output_pass_kernel(const T* x, const ChannelTable* tables, Grid g, const C32* states, T* y) {
  __shared__ ChannelTable table[kOutputChannels];
  const int64_t channel_tiles = (g.D + kOutputChannels - 1) / kOutputChannels;
  const int64_t group_tiles = (g.groups + kOutputGroups - 1) / kOutputGroups;
  const int64_t tile = blockIdx.x % channel_tiles, b = blockIdx.x / (channel_tiles * group_tiles);
  const int64_t d0 = tile * kOutputChannels, group0 = (blockIdx.x / channel_tiles) % group_tiles * kOutputGroups;
  // The block's tables, as 16-byte words.
  const int64_t words = min(int64_t(kOutputChannels), g.D - d0) * int64_t(sizeof(ChannelTable) / 16);
  for (int64_t i = threadIdx.x; i < words; i += kOutputThreads) {
    reinterpret_cast<int4*>(table)[i] = reinterpret_cast<const int4*>(tables + d0)[i];
  }
  __syncthreads();
  const int j = threadIdx.x % kOutputChannels;
  const int64_t d = d0 + j, group = group0 + threadIdx.x / kOutputChannels;
  if (d >= g.D || group >= g.groups) return;
  float taps[kChunk];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) taps[i] = table[j].taps[i];
  C32 gs[kModes];
#pragma unroll
  for (int n = 0; n < kModes; ++n) gs[n] = table[j].gamma[n] * states[g.state_index(b, group, d, n)];
  const int64_t c_end = min(g.C, (group + 1) * g.G);
  for (int64_t c = group * g.G; c < c_end; ++c) {
    float u[kChunk];
    load_chunk(x, g, b, c, d, u);
    T* out = y + g.token_index(b, c * kChunk, d);
    if (c + 1 < c_end) chunk_outputs<true>(table[j], taps, u, gs, g.chunk_length(c), out, g.D);
    else chunk_outputs<false>(table[j], taps, u, gs, g.chunk_length(c), out, g.D);
  }
}

// ---- parameter gradients ------------------------------------------------------------------------------

// One block per (b, span of kSpanChunks chunks, tile of kTileChannels channels), a thread per (channel, pair of
// mode slots 2m, 2m + 1): each walk is two independent chains per thread, and x and dy are read once per step
// for both modes (docs/perf.md, "CEMA step 4", has the count). Each chunk's x and dy tiles go to shared memory
// once for the whole block; the next chunk's tile (and its saved states) is fetched into registers while the
// current chunk is computed, so one __syncthreads per chunk suffices with two buffers (a buffer is written again
// only after every thread has passed the barrier that follows its last read). A warp is 16 channels × 2 pairs:
// its shared-memory reads are 16 consecutive words, broadcast to the second pair, without bank conflicts.
// Threads whose pair has no live mode (2m >= N) or whose channel is past D load and synchronise but accumulate
// nothing; with an odd N the last pair's second slot is a zero mode (zero coefficients and states).
// The 33 forward states of two modes would take 132 registers, so a chunk is walked in halves of kHalf steps:
//   A. the forward walk over the first half from the saved entering state, keeping only its end;
//   B. from there the forward walk over the second half, keeping its states, then the adjoint walk back over it
//      from the saved adjoint c_{t1-1};
//   C. the forward walk over the first half again from the entering state, then the adjoint back over it.
// The states, the adjoint and the order of every accumulation are those of one walk per chunk; the forward walk
// costs 1.5 times as much. Full chunks run without the per-step guards of a short last chunk. Each thread leaves
// p₀·Re a₀ + p₁·Re a₁ of every step in shared memory, and after a second barrier each (t, d) of the tile is summed
// over the pairs, in pair order, into dx_t (with omega·dy_t); the thread that sums (t, d) adds dy_t·x_t to its
// ∂ℓ/∂omega, and every one of a thread's (t, d) is of its own channel (kGradThreads is a multiple of
// kTileChannels), so ∂ℓ/∂omega is reduced over the kPairs threads of a channel once, at the end.
// Three blocks per SM (12 warps, 24 chains per walk) allow 168 registers, used without spills; at four blocks
// (128 registers) ptxas spills ~100 bytes. The halves are a loop that is not unrolled: unrolled, ptxas runs the
// first half's forward walk beside the second half's walks and spills ~270 bytes even at 168 registers.
constexpr int kTileChannels = 16;
constexpr int kPairs = kModes / 2;  // threads per channel
constexpr int kGradThreads = kTileChannels * kPairs;
constexpr int kHalf = kChunk / 2;
constexpr int kTileLoads = kChunk * kTileChannels / kGradThreads;  // tile values each thread loads
static_assert(kModes % 2 == 0 && kChunk % 2 == 0, "mode slots come in pairs, chunks in halves");
static_assert(kChunk * kTileChannels % kGradThreads == 0, "a chunk's tile splits evenly over the threads");
static_assert(kGradThreads % kTileChannels == 0, "a thread's tile values are all of its own channel");

// A thread's two mode slots: their coefficients (zero for a slot past N).
struct ModePair {
  float p[2];
  C32 q[2], gamma[2];
};

// A chunk's share of one thread: its values of the x and dy tiles (zero past L or D) and the chunk's saved
// forward and backward states of the thread's two modes.
struct ChunkFetch {
  float x[kTileLoads], dy[kTileLoads];
  C32 forward_state[2], backward_state[2];
};

template <class T>
__device__ __forceinline__ ChunkFetch fetch_chunk(const T* x, const T* dy, const Grid& g, int64_t b, int64_t c,
                                                  int64_t d0, int live_modes, int64_t state,
                                                  const C32* forward_states, const C32* backward_states) {
  ChunkFetch f;
#pragma unroll
  for (int i = 0; i < kTileLoads; ++i) {
    const int v = threadIdx.x + i * kGradThreads;
    const int64_t t = c * kChunk + v / kTileChannels, d = d0 + v % kTileChannels;
    const bool inside = t < g.L && d < g.D;
    f.x[i] = inside ? load(x + g.token_index(b, t, d)) : 0.f;
    f.dy[i] = inside ? load(dy + g.token_index(b, t, d)) : 0.f;
  }
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    f.forward_state[s] = s < live_modes ? forward_states[state + s] : C32();
    f.backward_state[s] = s < live_modes ? backward_states[state + s] : C32();
  }
  return f;
}

using TileRows = float[kChunk][kTileChannels];
using DxTerms = float[kChunk][kPairs][kTileChannels];

// Steps 0 .. kHalf − 1 of the chunk (those < length unless kFull) from the states h: h becomes the state after them.
template <bool kFull>
__device__ __forceinline__ void forward_half(const TileRows& xs, int j, int64_t length, const ModePair& mp,
                                             C32 (&h)[2]) {
#pragma unroll
  for (int k = 0; k < kHalf; ++k) {
    if (kFull || k < length) {
      const float x_t = xs[k][j];
#pragma unroll
      for (int s = 0; s < 2; ++s) h[s] = cema_state_step(mp.q[s], mp.p[s], h[s], x_t);
    }
  }
}

// Steps base .. base + kHalf − 1 of the chunk (those < length unless kFull): the forward walk from h_enter (the
// states before step base), keeping its states, then the adjoint walk back from c (what reaches the half's last
// step from later), accumulating into acc and leaving each step's dx terms; c ends as what reaches step base − 1.
template <bool kFull>
__device__ __forceinline__ void gradient_half(int base, const TileRows& xs, const TileRows& dys, int j, int m,
                                              int64_t length, const ModePair& mp, const C32 (&h_enter)[2],
                                              C32 (&c)[2], CemaModeGrad<float> (&acc)[2], DxTerms& dx_terms) {
  C32 h[2][kHalf + 1];  // h[s][k] = the state before step base + k
#pragma unroll
  for (int s = 0; s < 2; ++s) h[s][0] = h_enter[s];
#pragma unroll
  for (int k = 0; k < kHalf; ++k) {
    if (kFull || base + k < length) {
      const float x_t = xs[base + k][j];
#pragma unroll
      for (int s = 0; s < 2; ++s) h[s][k + 1] = cema_state_step(mp.q[s], mp.p[s], h[s][k], x_t);
    }
  }
#pragma unroll
  for (int k = kHalf - 1; k >= 0; --k) {
    if (kFull || base + k < length) {
      const float dy_t = dys[base + k][j], x_t = xs[base + k][j];
      float term = 0.f;
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        term += mp.p[s] * cema_adjoint_step(mp.q[s], mp.gamma[s], dy_t, x_t, h[s][k], h[s][k + 1], c[s], acc[s]);
      }
      dx_terms[base + k][m][j] = term;
    }
  }
}

// One chunk of a thread's two modes (passes A, B and C above).
template <bool kFull>
__device__ __forceinline__ void chunk_grads(const TileRows& xs, const TileRows& dys, int j, int m, int64_t length,
                                            const ModePair& mp, const C32 (&h_enter)[2], C32 (&c)[2],
                                            CemaModeGrad<float> (&acc)[2], DxTerms& dx_terms) {
  C32 h_mid[2] = {h_enter[0], h_enter[1]};
  forward_half<kFull>(xs, j, length, mp, h_mid);
  // Not unrolled: the first half's forward walk would otherwise be scheduled beside the second half's walks, with
  // both halves' states live.
#pragma unroll 1
  for (int half = length > kHalf ? 1 : 0; half >= 0; --half) {
    const C32 h_start[2] = {half ? h_mid[0] : h_enter[0], half ? h_mid[1] : h_enter[1]};
    gradient_half<kFull>(half * kHalf, xs, dys, j, m, length, mp, h_start, c, acc, dx_terms);
  }
}

template <class T>
__global__ void __launch_bounds__(kGradThreads, 3)
    parameter_grads_kernel(const T* x, const T* dy, CemaCoefficientPointers coef, Grid g, int64_t spans,
                           const C32* forward_states, const C32* backward_states, T* dx,
                           CemaModeGrad<float>* mode_partials, float* omega_partials) {
  __shared__ float x_tile[2][kChunk][kTileChannels], dy_tile[2][kChunk][kTileChannels];
  __shared__ DxTerms dx_terms;  // p₀·Re a₀ + p₁·Re a₁ of each (step, pair, channel)
  __shared__ float omega_parts[kPairs][kTileChannels];
  const int64_t tiles = (g.D + kTileChannels - 1) / kTileChannels;
  const int64_t tile = blockIdx.x % tiles, span = (blockIdx.x / tiles) % spans, b = blockIdx.x / (tiles * spans);
  const int j = threadIdx.x % kTileChannels, m = threadIdx.x / kTileChannels;
  const int64_t d0 = tile * kTileChannels, d = d0 + j, mode = d * g.N + 2 * m;
  const int64_t modes_left = g.N - 2 * m;  // live mode slots of this pair: 2, 1 (odd N) or none
  const int live_modes = d >= g.D || modes_left <= 0 ? 0 : modes_left >= 2 ? 2 : 1;
  const int64_t pairs = (g.N + 1) / 2;
  ModePair mp;
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    const bool live = s < live_modes;
    mp.p[s] = live ? coef.p[mode + s] : 0.f;
    mp.q[s] = live ? coef.q[mode + s] : C32();
    mp.gamma[s] = live ? coef.gamma[mode + s] : C32();
  }
  const float omega = d < g.D ? coef.omega[d] : 0.f;
  CemaModeGrad<float> acc[2];
  float d_omega = 0.f;
  const int64_t c_begin = span * kSpanChunks, c_end = min(g.C, c_begin + kSpanChunks);
  ChunkFetch next = fetch_chunk(x, dy, g, b, c_begin, d0, live_modes, g.state_index(b, c_begin, d, 2 * m),
                                forward_states, backward_states);
  for (int64_t c = c_begin; c < c_end; ++c) {
    const int buffer = int(c - c_begin) & 1;
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int v = threadIdx.x + i * kGradThreads;
      x_tile[buffer][v / kTileChannels][v % kTileChannels] = next.x[i];
      dy_tile[buffer][v / kTileChannels][v % kTileChannels] = next.dy[i];
    }
    const C32 h_enter[2] = {next.forward_state[0], next.forward_state[1]};
    C32 carry[2] = {next.backward_state[0], next.backward_state[1]};  // c_{t1-1}: adjoint from the future
    __syncthreads();
    if (c + 1 < c_end) {
      next = fetch_chunk(x, dy, g, b, c + 1, d0, live_modes, g.state_index(b, c + 1, d, 2 * m), forward_states,
                         backward_states);
    }
    const int64_t length = g.chunk_length(c);
    if (live_modes > 0) {
      if (length == kChunk) {
        chunk_grads<true>(x_tile[buffer], dy_tile[buffer], j, m, length, mp, h_enter, carry, acc, dx_terms);
      } else {
        chunk_grads<false>(x_tile[buffer], dy_tile[buffer], j, m, length, mp, h_enter, carry, acc, dx_terms);
      }
    }
    // dx_t = omega·dy_t + the pairs' terms, in pair order; the tile's values are spread over the threads as for
    // the loads. The next chunk writes dx_terms only after the barrier at its start, which every thread reaches
    // after these reads.
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTileLoads; ++i) {
      const int k = (threadIdx.x + i * kGradThreads) / kTileChannels;
      if (k < length && d < g.D) {
        const float dy_t = dy_tile[buffer][k][j];
        float sum = omega * dy_t;
#pragma unroll
        for (int pair = 0; pair < kPairs; ++pair) {
          if (pair < pairs) sum += dx_terms[k][pair][j];
        }
        dx[g.token_index(b, c * kChunk + k, d)] = from_float<T>(sum);
        d_omega += dy_t * x_tile[buffer][k][j];
      }
    }
  }
  omega_parts[m][j] = d_omega;
  __syncthreads();
  const int64_t row = b * spans + span;
  if (m == 0 && d < g.D) {
    float sum = 0.f;
    for (int pair = 0; pair < kPairs; ++pair) sum += omega_parts[pair][j];
    omega_partials[row * g.D + d] = sum;
  }
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    if (s < live_modes) mode_partials[row * g.D * g.N + mode + s] = acc[s];
  }
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
  ChannelTable* tables = nullptr;
  C32* forward_states = nullptr;
  C32* backward_states = nullptr;
  CemaModeGrad<float>* mode_partials = nullptr;
  float* omega_partials = nullptr;
  float* theta_parts = nullptr;
  int64_t bytes = 0;
};

int64_t span_count(const Grid& g) { return (g.C + kSpanChunks - 1) / kSpanChunks; }

// The forward's grid has groups of cema_group_chunks chunks; the backward's a state per chunk.
Grid forward_grid(const CemaSizes& s) { return make_grid(s, cema_group_chunks(s)); }
Grid backward_grid(const CemaSizes& s) { return make_grid(s, 1); }

Workspace carve(const Grid& g, bool backward, void* base) {
  Workspace w;
  char* bytes = static_cast<char*>(base);
  auto take = [&](auto*& pointer, int64_t count) {
    using U = std::remove_reference_t<decltype(*pointer)>;
    w.bytes = (w.bytes + 255) / 256 * 256;
    pointer = bytes ? reinterpret_cast<U*>(bytes + w.bytes) : nullptr;
    w.bytes += count * int64_t(sizeof(U));
  };
  const int64_t states = g.B * g.groups * g.D * kModes;
  take(w.tables, g.D);
  take(w.forward_states, states);
  if (backward) {
    const int64_t rows = g.B * span_count(g);
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

// Passes 1 and 2 of one sweep: the state entering every group; `final` may be null.
template <bool kReverse, class T>
void run_states(const T* u, const CemaCoefficientPointers& coef, const ChannelTable* tables, const C32* initial,
                const Grid& g, C32* states, C32* final, Stream stream) {
  MGL_CHECK(!kReverse || g.G == 1, "cema (CUDA): the reverse sweep keeps a state per chunk");
  const int64_t span = local_span_chunks(g);
  const int64_t blocks = g.B * ((g.D + kLocalChannels - 1) / kLocalChannels) * ((g.C + span - 1) / span);
  if (blocks > 0) {
    local_pass_kernel<T, kReverse><<<grid_for(blocks * kLocalThreads, kLocalThreads), kLocalThreads, 0, stream>>>(
        u, tables, coef, g, span, states);
    MGL_CUDA_CHECK_LAUNCH();
  }
  const int64_t mode_threads = g.B * g.D * g.N;
  if (mode_threads > 0) {
    scan_carry_kernel<kReverse><<<grid_for(mode_threads, kCarryThreads), kCarryThreads, 0, stream>>>(
        coef.log_q, initial, g, states, final);
    MGL_CUDA_CHECK_LAUNCH();
  }
}

void check_sizes(const CemaSizes& s) {
  MGL_CHECK(s.modes >= 1 && s.modes <= kCemaMaxModes, "cema (CUDA): N = ", s.modes, " modes; the kernels hold 1..",
            kCemaMaxModes, " modes per channel in registers");
}

void build_tables(const CemaCoefficientPointers& c, const Grid& g, ChannelTable* tables, Stream stream) {
  if (g.D == 0) return;
  tables_kernel<<<grid_for(g.D * kTableRows), kThreads, 0, stream>>>(c, g.D, g.N, tables);
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

int64_t cema_forward_workspace_bytes(const CemaSizes& sizes) {
  return carve(forward_grid(sizes), false, nullptr).bytes;
}
int64_t cema_backward_workspace_bytes(const CemaSizes& sizes) {
  return carve(backward_grid(sizes), true, nullptr).bytes;
}

void cema_forward(const CemaForwardArgs& a, Stream stream) {
  check_sizes(a.sizes);
  const Grid g = forward_grid(a.sizes);
  const Workspace w = carve(g, false, a.workspace);
  build_tables(a.coefficients, g, w.tables, stream);
  dispatch_activation(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(a.x);
    run_states<false>(x, a.coefficients, w.tables, a.h_in, g, w.forward_states, a.h_out, stream);
    const int64_t blocks = g.B * ((g.D + kOutputChannels - 1) / kOutputChannels) *
                           ((g.groups + kOutputGroups - 1) / kOutputGroups);
    if (blocks > 0) {
      output_pass_kernel<T><<<grid_for(blocks * kOutputThreads, kOutputThreads), kOutputThreads, 0, stream>>>(
          x, w.tables, g, w.forward_states, static_cast<T*>(a.y));
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
}

void cema_backward(const CemaBackwardArgs& a, Stream stream) {
  check_sizes(a.sizes);
  const Grid g = backward_grid(a.sizes);
  const Workspace w = carve(g, true, a.workspace);
  build_tables(a.coefficients, g, w.tables, stream);
  const int64_t spans = span_count(g), rows = g.B * spans;
  dispatch_activation(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xs = static_cast<const T*>(a.x);
    const T* dys = static_cast<const T*>(a.dy);
    // Forward states entering each chunk (recomputed), then the adjoint entering each chunk from the
    // future (G_{h_in} is where the reverse carry ends); dx comes with the parameter gradients.
    run_states<false>(xs, a.coefficients, w.tables, a.h_in, g, w.forward_states, nullptr, stream);
    run_states<true>(dys, a.coefficients, w.tables, a.g_out, g, w.backward_states, a.h_in ? a.d_h_in : nullptr,
                     stream);
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

// TimestepNorm on the GPU (docs/megalodon.md §2.2.6): the time recurrences as parallel scans.
//
// Forward. The Welford fold of §2.2.2 is an associative combine of (count, mean, variance), so the
// running statistics are a prefix scan over time of every (b, g) column:
//   1. step_moments:  (m_t, s_t) of every (b, t, g) group of dg values, one warp each.
//   2. ReduceChunks:  time is cut into chunks of C steps; one thread per (b, chunk, g) folds its
//                     chunk into a summary (steps, mean, variance).
//   3. column_scan:   one block per column scans the summaries (exclusive, with the incoming state
//                     as the prefix): the state before every chunk, and the final state.
//   4. EmitChunks:    one thread per (b, chunk, g) refolds its chunk from that prefix and writes mu_t
//                     and r_t = 1 / sqrt(v_t + eps) for every step.
//   5. normalize:     y = (x - mu_t) r_t (weight + 1) + bias, elementwise.
// Accuracy over long sequences: at count n a step moves the mean by ~1/n of a value of size ~1, an
// increment that f32 rounds away once n reaches millions. The sequential folds (2, 4) are therefore
// Kahan-compensated, and the scan over chunk summaries is a tree (pairwise combines), whose error
// grows like log(L) instead of L.
//
// Backward. The adjoint recurrence of §2.2.3 is affine in a = (a_mu, a_v):
//   a(before step t) = [[c1, -2 c1 c2 (m_t - mu_{t-1})], [0, c1]] a(after step t) + b_t.
// Over a chunk that moves the count from m to n (k unpadded steps whose m_t average mu_B, state mean u
// before the chunk) the product of those matrices is, in closed form (the Jacobian of the chunk's fold
// with respect to the state before it),
//   [[m/n, -2 (m/n) (k/n) (mu_B - u)], [0, m/n]],
// so a chunk's whole map is that matrix plus the offset found by sweeping it from a zero adjoint.
//   1. step_sums:      m_t, P_t = sum dy w, S_t = sum dy w (x - mu_t) per (b, t, g), one warp each.
//   2. ChunkAdjoints:  per (b, chunk, g): sweep from a zero adjoint, giving the chunk's affine map.
//   3. column_scan:    one block per column composes the maps right to left, starting from the
//                      gradient of the outgoing state: the adjoint entering every chunk from its
//                      right, and after the last map the gradients of the incoming state.
//   4. EmitAdjoints:   per (b, chunk, g): re-sweep from the true adjoint, writing dm_t and ds_t.
//   5. input_grads:    dx elementwise, plus per-tile partial sums of dweight and dbias.
//   6. param_grads:    one warp per channel adds up the partial sums.
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/row_reduce.cuh"
#include "cuda/timestep_norm.h"

namespace mgl::cuda {

namespace {

// ---- scalars -----------------------------------------------------------------------------------

// S, the statistics type, is math_t<T> (cuda/row_reduce.cuh): f32 for f32 and bf16 data, f64 for f64;
// values move through load_math / store_math and warps sum with warp_sum, as in every row kernel.

MGL_HOST_DEVICE inline int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

// sum += increment, Kahan-compensated: `error` is what rounding added too much last time.
template <class S>
MGL_HOST_DEVICE inline void kahan_add(S& sum, S& error, S increment) {
  const S y = increment - error;
  const S t = sum + y;
  error = (t - sum) - y;
  sum = t;
}

// ---- where things are ----------------------------------------------------------------------------

struct Geometry {
  int64_t batch, length, dim, groups;
  int64_t chunk, chunks;  // time steps per chunk, chunks per column

  MGL_HOST_DEVICE int64_t column(int64_t b, int64_t g) const { return b * groups + g; }
  // Per-step statistics [B, L, G].
  MGL_HOST_DEVICE int64_t stat(int64_t b, int64_t t, int64_t g) const { return (b * length + t) * groups + g; }
  // Per-chunk summaries [B * G, chunks]: one column's chunks are contiguous for the column scan.
  MGL_HOST_DEVICE int64_t summary(int64_t column, int64_t j) const { return column * chunks + j; }
  // The counts before each chunk, then the final count: [B, chunks + 1].
  MGL_HOST_DEVICE int64_t count_index(int64_t b, int64_t j) const { return b * (chunks + 1) + j; }
  MGL_HOST_DEVICE int64_t first(int64_t j) const { return j * chunk; }
  MGL_HOST_DEVICE int64_t end(int64_t j) const { return smaller(length, (j + 1) * chunk); }
};

Geometry geometry(const TimestepNormSizes& s) {
  return {s.batch, s.length, s.dim, s.groups, timestep_norm_chunk_length(s), timestep_norm_chunks(s)};
}

// ---- the forward algebra -------------------------------------------------------------------------
// RunningMoments and merge() (base/timestep_norm_math.h) are the combine of the scan.

// merge() as a running fold, with Kahan-compensated mean and variance.
template <class S>
struct CompensatedFold {
  RunningMoments<S> value;
  S mean_error = S(0), var_error = S(0);

  MGL_HOST_DEVICE explicit CompensatedFold(const RunningMoments<S>& start) : value(start) {}
  MGL_HOST_DEVICE void add(const RunningMoments<S>& b) {
    if (b.count == 0) return;
    if (value.count == 0) {
      *this = CompensatedFold(b);
      return;
    }
    const MomentsIncrement<S> step = merge_increment(value, b);
    kahan_add(value.var, var_error, step.var);
    kahan_add(value.mean, mean_error, step.mean);
    value.count += b.count;
  }
};

// ---- the backward algebra ------------------------------------------------------------------------
// NormAdjoint and adjoint_step() (base/timestep_norm_math.h) are one step of the sweep.

// The affine map a -> [[scale, cross], [0, scale]] a + (mean, var) that carries an adjoint across a
// stretch of steps, right to left.
template <class S>
struct AdjointMap {
  S scale, cross, mean, var;
};

// ---- generic launchers ---------------------------------------------------------------------------

// Calls work(b, j, g) for every sequence b, chunk j and group g; g varies fastest, so neighbouring
// threads read neighbouring entries of the [B, L, G] statistics.
template <class Work>
__global__ void chunk_kernel(Work work, int64_t batch, int64_t chunks, int64_t groups) {
  const int64_t total = batch * chunks * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    work(i / (groups * chunks), (i / groups) % chunks, i % groups);
}

constexpr int kScanThreads = 512;

// Exclusive scan of one value per thread, in thread order, within a block of kScanThreads threads
// (Hillis-Steele: log2(threads) rounds of combining with the value `offset` places to the left).
template <class Column, class V>
__device__ V block_exclusive_scan(V value, V* shared) {
  const int tid = threadIdx.x;
  shared[tid] = value;
  __syncthreads();
  for (int offset = 1; offset < kScanThreads; offset *= 2) {
    const V left = tid >= offset ? shared[tid - offset] : Column::identity();
    __syncthreads();
    if (tid >= offset) shared[tid] = Column::combine(left, shared[tid]);
    __syncthreads();
  }
  return tid == 0 ? Column::identity() : shared[tid - 1];
}

// One block per column: the exclusive scan of the column's chunk summaries, seeded with the column's
// initial value. Column supplies the monoid (identity, combine(earlier, later)) and the data:
// initial(col), item(col, position), store(col, position, prefix before it), finish(col, total).
// Each thread folds a contiguous run of positions, the block scans the runs' totals, and each thread
// walks its run again from its prefix.
template <class Column>
__global__ void __launch_bounds__(kScanThreads) column_scan_kernel(Column column, int64_t positions) {
  using V = typename Column::Value;
  __shared__ V shared[kScanThreads];
  const int64_t col = blockIdx.x;
  const int64_t per_thread = (positions + kScanThreads - 1) / kScanThreads;
  const int64_t begin = smaller(positions, threadIdx.x * per_thread), end = smaller(positions, begin + per_thread);
  V run = Column::identity();
  for (int64_t p = begin; p < end; ++p) run = Column::combine(run, column.item(col, p));
  V prefix = Column::combine(column.initial(col), block_exclusive_scan<Column>(run, shared));
  for (int64_t p = begin; p < end; ++p) {
    const V item = column.item(col, p);
    column.store(col, p, prefix);
    prefix = Column::combine(prefix, item);
  }
  if (threadIdx.x == kScanThreads - 1) column.finish(col, prefix);
}

// ---- forward ---------------------------------------------------------------------------------------

// One warp per (b, t, g): the mean and population variance of the group's dg values (two passes;
// the second reads from L1).
template <class T, class S>
__global__ void step_moments_kernel(const T* x, int64_t count, int64_t dg, S* step_m, S* step_s) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; w < count; w += warps) {
    const T* values = x + w * dg;
    S sum = S(0);
    for (int64_t k = lane; k < dg; k += 32) sum += load_math(values + k);
    const S mean = warp_sum(sum) / S(dg);
    S squares = S(0);
    for (int64_t k = lane; k < dg; k += 32) {
      const S d = load_math(values + k) - mean;
      squares += d * d;
    }
    const S var = warp_sum(squares) / S(dg);
    if (lane == 0) {
      step_m[w] = mean;
      step_s[w] = var;
    }
  }
}

template <class S>
struct ReduceChunks {
  Geometry geo;
  PaddingMask mask;
  const S* step_m;
  const S* step_s;
  S* summary_steps;
  S* summary_mean;
  S* summary_var;

  MGL_HOST_DEVICE void operator()(int64_t b, int64_t j, int64_t g) const {
    CompensatedFold<S> fold(RunningMoments<S>{0, S(0), S(0)});
    for (int64_t t = geo.first(j); t < geo.end(j); ++t) {
      const int64_t s = geo.stat(b, t, g);
      if (!mask.padded(b * geo.length + t)) fold.add(RunningMoments<S>{1, step_m[s], step_s[s]});
    }
    const int64_t i = geo.summary(geo.column(b, g), j);
    summary_steps[i] = S(fold.value.count);  // at most 256: exact
    summary_mean[i] = fold.value.mean;
    summary_var[i] = fold.value.var;
  }
};

// The scan of chunk summaries. Each prefix overwrites its summary's mean and variance; the column of
// group 0 writes the counts (the same for every group of a sequence).
template <class S>
struct ForwardColumns {
  using Value = RunningMoments<S>;
  Geometry geo;
  const int64_t* count_in;
  const S* mean_in;
  const S* var_in;
  const S* summary_steps;
  S* summary_mean;
  S* summary_var;
  int64_t* chunk_count;
  int64_t* count_out;
  S* mean_out;
  S* var_out;

  MGL_HOST_DEVICE static Value identity() { return {0, S(0), S(0)}; }
  MGL_HOST_DEVICE static Value combine(const Value& earlier, const Value& later) { return merge(earlier, later); }
  MGL_HOST_DEVICE Value initial(int64_t col) const { return {count_in[col / geo.groups], mean_in[col], var_in[col]}; }
  MGL_HOST_DEVICE Value item(int64_t col, int64_t j) const {
    const int64_t i = geo.summary(col, j);
    return {static_cast<int64_t>(summary_steps[i]), summary_mean[i], summary_var[i]};
  }
  MGL_HOST_DEVICE void store(int64_t col, int64_t j, const Value& prefix) const {
    const int64_t i = geo.summary(col, j);
    summary_mean[i] = prefix.mean;
    summary_var[i] = prefix.var;
    if (col % geo.groups == 0) chunk_count[geo.count_index(col / geo.groups, j)] = prefix.count;
  }
  MGL_HOST_DEVICE void finish(int64_t col, const Value& total) const {
    mean_out[col] = total.mean;
    var_out[col] = total.var;
    if (col % geo.groups == 0) {
      chunk_count[geo.count_index(col / geo.groups, geo.chunks)] = total.count;
      count_out[col / geo.groups] = total.count;
    }
  }
};

template <class S>
struct EmitChunks {
  Geometry geo;
  PaddingMask mask;
  S eps;
  const S* step_m;
  const S* step_s;
  const S* prefix_mean;
  const S* prefix_var;
  const int64_t* chunk_count;
  S* step_mean;
  S* step_rstd;

  MGL_HOST_DEVICE void operator()(int64_t b, int64_t j, int64_t g) const {
    const int64_t i = geo.summary(geo.column(b, g), j);
    CompensatedFold<S> fold(RunningMoments<S>{chunk_count[geo.count_index(b, j)], prefix_mean[i], prefix_var[i]});
    for (int64_t t = geo.first(j); t < geo.end(j); ++t) {
      const int64_t s = geo.stat(b, t, g);
      if (!mask.padded(b * geo.length + t)) fold.add(RunningMoments<S>{1, step_m[s], step_s[s]});
      step_mean[s] = fold.value.mean;
      step_rstd[s] = S(1) / sqrt(fold.value.var + eps);
    }
  }
};

template <class T, class S>
__global__ void normalize_kernel(Geometry geo, PaddingMask mask, const T* x, const T* weight, const T* bias,
                                 const S* step_mean, const S* step_rstd, T* y) {
  const int64_t total = geo.batch * geo.length * geo.dim, dg = geo.dim / geo.groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / geo.dim, c = i % geo.dim, s = row * geo.groups + c / dg;
    const S out = (load_math(x + i) - step_mean[s]) * step_rstd[s] * (load_math(weight + c) + S(1)) + load_math(bias + c);
    store_math(y + i, mask.padded(row) ? S(0) : out);
  }
}

// ---- backward --------------------------------------------------------------------------------------

// One warp per (b, t, g): m_t = mean x, P_t = sum dy w, S_t = sum dy w (x - mu_t), w = weight + 1.
template <class T, class S>
__global__ void step_sums_kernel(Geometry geo, const T* x, const T* dy, const T* weight, const S* step_mean,
                                 S* step_m, S* step_p, S* step_s) {
  const int lane = threadIdx.x % 32;
  const int64_t count = geo.batch * geo.length * geo.groups, dg = geo.dim / geo.groups;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; w < count; w += warps) {
    const int64_t first = w * dg, channel = (w % geo.groups) * dg;
    const S mu = step_mean[w];
    S sx = S(0), sp = S(0), ss = S(0);
    for (int64_t k = lane; k < dg; k += 32) {
      const S xv = load_math(x + (first + k)), dyw = load_math(dy + (first + k)) * (load_math(weight + (channel + k)) + S(1));
      sx += xv;
      sp += dyw;
      ss += dyw * (xv - mu);
    }
    sx = warp_sum(sx);
    sp = warp_sum(sp);
    ss = warp_sum(ss);
    if (lane == 0) {
      step_m[w] = sx / S(dg);
      step_p[w] = sp;
      step_s[w] = ss;
    }
  }
}

// What the chunk sweeps read: the per-step sums and the forward's statistics.
template <class S>
struct SweepInputs {
  Geometry geo;
  PaddingMask mask;
  const S* step_m;
  S* step_p;  // P_t in; EmitAdjoints overwrites it with dm_t
  S* step_s;  // S_t in; EmitAdjoints overwrites it with ds_t
  const S* step_mean;
  const S* step_rstd;
  const S* mean_in;
  const int64_t* chunk_count;

  // The state mean before step t.
  MGL_HOST_DEVICE S mean_before(int64_t b, int64_t t, int64_t g) const {
    return t == 0 ? mean_in[geo.column(b, g)] : step_mean[geo.stat(b, t - 1, g)];
  }
  // Sweeps chunk j right to left from adjoint `a`; calls emit(s, dm, ds) for every step (index s into
  // the statistics) and returns the sum of the unpadded steps' m_t.
  template <class Emit>
  MGL_HOST_DEVICE S sweep(int64_t b, int64_t j, int64_t g, NormAdjoint<S>& a, Emit&& emit) const {
    int64_t count = chunk_count[geo.count_index(b, j + 1)];
    S m_sum = S(0);
    for (int64_t t = geo.end(j) - 1; t >= geo.first(j); --t) {
      const int64_t s = geo.stat(b, t, g);
      S dm = S(0), ds = S(0);
      if (!mask.padded(b * geo.length + t)) {
        adjoint_step(a, count, step_rstd[s], step_p[s], step_s[s], step_m[s], mean_before(b, t, g), dm, ds);
        m_sum += step_m[s];
        --count;
      }
      emit(s, dm, ds);
    }
    return m_sum;
  }
};

template <class S>
struct ChunkAdjoints {
  SweepInputs<S> in;
  S* map_scale;
  S* map_cross;
  S* map_mean;
  S* map_var;

  MGL_HOST_DEVICE void operator()(int64_t b, int64_t j, int64_t g) const {
    NormAdjoint<S> a{S(0), S(0)};
    const S m_sum = in.sweep(b, j, g, a, [](int64_t, S, S) {});
    const int64_t before = in.chunk_count[in.geo.count_index(b, j)], after = in.chunk_count[in.geo.count_index(b, j + 1)];
    const int64_t steps = after - before;
    const S scale = after > 0 ? S(before) / S(after) : S(1);
    const S block_shift = steps > 0 ? m_sum / S(steps) - in.mean_before(b, in.geo.first(j), g) : S(0);
    const int64_t i = in.geo.summary(in.geo.column(b, g), j);
    map_scale[i] = scale;
    map_cross[i] = steps > 0 ? S(-2) * scale * (S(steps) / S(after)) * block_shift : S(0);
    map_mean[i] = a.mean;
    map_var[i] = a.var;
  }
};

// The right-to-left composition of chunk maps. Position p is chunk (chunks - 1 - p); the running value
// is a constant map (scale 0) whose offset is the adjoint, so its prefix before chunk j is the adjoint
// arriving at the end of chunk j, stored over that chunk's map offset.
template <class S>
struct BackwardColumns {
  using Value = AdjointMap<S>;
  Geometry geo;
  const S* dmean_out;
  const S* dvar_out;
  const S* map_scale;
  const S* map_cross;
  S* map_mean;
  S* map_var;
  S* dmean_in;
  S* dvar_in;

  MGL_HOST_DEVICE static Value identity() { return {S(1), S(0), S(0), S(0)}; }
  // `earlier` is applied first: later(earlier(a)).
  MGL_HOST_DEVICE static Value combine(const Value& e, const Value& l) {
    return {l.scale * e.scale, l.scale * e.cross + l.cross * e.scale, l.scale * e.mean + l.cross * e.var + l.mean,
            l.scale * e.var + l.var};
  }
  MGL_HOST_DEVICE Value initial(int64_t col) const { return {S(0), S(0), dmean_out[col], dvar_out[col]}; }
  MGL_HOST_DEVICE Value item(int64_t col, int64_t p) const {
    const int64_t i = geo.summary(col, geo.chunks - 1 - p);
    return {map_scale[i], map_cross[i], map_mean[i], map_var[i]};
  }
  MGL_HOST_DEVICE void store(int64_t col, int64_t p, const Value& prefix) const {
    const int64_t i = geo.summary(col, geo.chunks - 1 - p);
    map_mean[i] = prefix.mean;
    map_var[i] = prefix.var;
  }
  MGL_HOST_DEVICE void finish(int64_t col, const Value& total) const {
    dmean_in[col] = total.mean;
    dvar_in[col] = total.var;
  }
};

template <class S>
struct EmitAdjoints {
  SweepInputs<S> in;
  const S* arriving_mean;  // the adjoint arriving at the end of each chunk
  const S* arriving_var;

  MGL_HOST_DEVICE void operator()(int64_t b, int64_t j, int64_t g) const {
    const int64_t i = in.geo.summary(in.geo.column(b, g), j);
    NormAdjoint<S> a{arriving_mean[i], arriving_var[i]};
    S* dm_out = in.step_p;
    S* ds_out = in.step_s;
    in.sweep(b, j, g, a, [&](int64_t s, S dm, S ds) {
      dm_out[s] = dm;
      ds_out[s] = ds;
    });
  }
};

constexpr int kGradColumns = 32, kGradRowLanes = 8;

// Block (32 channels x 8 row lanes) per (tile of kTimestepNormRowTile rows, 32 channels): writes dx
// and one partial sum of dweight and dbias per tile and channel.
template <class T, class S>
__global__ void input_grads_kernel(Geometry geo, PaddingMask mask, const T* x, const T* dy, const T* weight,
                                   const S* step_mean, const S* step_rstd, const S* step_m, const S* step_dm,
                                   const S* step_ds, T* dx, S* partial_dw, S* partial_db, int64_t row_tiles) {
  __shared__ S shared_dw[kGradRowLanes][kGradColumns];
  __shared__ S shared_db[kGradRowLanes][kGradColumns];
  const int64_t rows = geo.batch * geo.length, dg = geo.dim / geo.groups;
  const int64_t c = blockIdx.y * int64_t(kGradColumns) + threadIdx.x;
  for (int64_t tile = blockIdx.x; tile < row_tiles; tile += gridDim.x) {
    S dw = S(0), db = S(0);
    if (c < geo.dim) {
      const S w = load_math(weight + c) + S(1);
      const int64_t last = smaller(rows, (tile + 1) * kTimestepNormRowTile);
      for (int64_t row = tile * kTimestepNormRowTile + threadIdx.y; row < last; row += kGradRowLanes) {
        const int64_t i = row * geo.dim + c, s = row * geo.groups + c / dg;
        if (mask.padded(row)) {
          store_math(dx + i, S(0));
          continue;
        }
        const S xv = load_math(x + i), dyv = load_math(dy + i), r = step_rstd[s];
        store_math(dx + i, dyv * r * w + (step_dm[s] + S(2) * step_ds[s] * (xv - step_m[s])) / S(dg));
        dw += dyv * (xv - step_mean[s]) * r;
        db += dyv;
      }
    }
    shared_dw[threadIdx.y][threadIdx.x] = dw;
    shared_db[threadIdx.y][threadIdx.x] = db;
    __syncthreads();
    if (threadIdx.y == 0 && c < geo.dim) {
      for (int lane = 1; lane < kGradRowLanes; ++lane) {
        dw += shared_dw[lane][threadIdx.x];
        db += shared_db[lane][threadIdx.x];
      }
      partial_dw[tile * geo.dim + c] = dw;
      partial_db[tile * geo.dim + c] = db;
    }
    __syncthreads();
  }
}

// One warp per channel: dweight and dbias are the sums of the tiles' partial sums.
template <class T, class S>
__global__ void param_grads_kernel(int64_t dim, int64_t row_tiles, const S* partial_dw, const S* partial_db,
                                   T* dweight, T* dbias) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t c = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; c < dim; c += warps) {
    S dw = S(0), db = S(0);
    for (int64_t tile = lane; tile < row_tiles; tile += 32) {
      dw += partial_dw[tile * dim + c];
      db += partial_db[tile * dim + c];
    }
    dw = warp_sum(dw);
    db = warp_sum(db);
    if (lane == 0) {
      store_math(dweight + c, dw);
      store_math(dbias + c, db);
    }
  }
}

// ---- host side ---------------------------------------------------------------------------------------

// f(T{}) for the floating storage types (float, __nv_bfloat16, double).
template <class F>
void dispatch_data_type(DType dtype, F&& f) {
  dispatch_device_type(dtype, [&](auto tag) {
    if constexpr (std::is_integral_v<decltype(tag)>) MGL_FAIL("timestep_norm kernels: unsupported dtype ", dtype_name(dtype));
    else f(tag);
  });
}

template <class Work>
void launch_chunks(const Work& work, const Geometry& geo, Stream stream) {
  const int64_t total = geo.batch * geo.chunks * geo.groups;
  if (total == 0) return;
  chunk_kernel<<<blocks_for(total), kThreads, 0, stream>>>(work, geo.batch, geo.chunks, geo.groups);
  MGL_CUDA_CHECK_LAUNCH();
}

template <class Column>
void launch_column_scan(const Column& column, const Geometry& geo, Stream stream) {
  const int64_t columns = geo.batch * geo.groups;
  if (columns == 0) return;
  column_scan_kernel<<<static_cast<unsigned>(columns), kScanThreads, 0, stream>>>(column, geo.chunks);
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void timestep_norm_forward(const TimestepNormForwardArgs& a, Stream stream) {
  const Geometry geo = geometry(a.sizes);
  const int64_t steps = geo.batch * geo.length * geo.groups, summaries = geo.batch * geo.groups * geo.chunks;
  const int64_t dg = geo.dim / geo.groups;
  dispatch_data_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    using S = math_t<T>;
    const T* x = static_cast<const T*>(a.x);
    S* step_m = static_cast<S*>(a.workspace);
    S* step_s = step_m + steps;
    S* summary_steps = step_s + steps;
    S* summary_mean = summary_steps + summaries;
    S* summary_var = summary_mean + summaries;
    S* step_mean = static_cast<S*>(a.step_mean);
    S* step_rstd = static_cast<S*>(a.step_rstd);

    if (steps > 0) {
      step_moments_kernel<T, S><<<blocks_for(steps * 32), kThreads, 0, stream>>>(x, steps, dg, step_m, step_s);
      MGL_CUDA_CHECK_LAUNCH();
    }
    launch_chunks(ReduceChunks<S>{geo, a.mask, step_m, step_s, summary_steps, summary_mean, summary_var}, geo, stream);
    launch_column_scan(ForwardColumns<S>{geo, a.count_in, static_cast<const S*>(a.mean_in),
                                         static_cast<const S*>(a.var_in), summary_steps, summary_mean, summary_var,
                                         a.chunk_count, a.count_out, static_cast<S*>(a.mean_out),
                                         static_cast<S*>(a.var_out)},
                       geo, stream);
    launch_chunks(EmitChunks<S>{geo, a.mask, static_cast<S>(a.eps), step_m, step_s, summary_mean, summary_var,
                                a.chunk_count, step_mean, step_rstd},
                  geo, stream);
    const int64_t elements = geo.batch * geo.length * geo.dim;
    if (elements > 0) {
      normalize_kernel<T, S><<<blocks_for(elements), kThreads, 0, stream>>>(
          geo, a.mask, x, static_cast<const T*>(a.weight), static_cast<const T*>(a.bias), step_mean, step_rstd,
          static_cast<T*>(a.y));
      MGL_CUDA_CHECK_LAUNCH();
    }
  });
}

void timestep_norm_backward(const TimestepNormBackwardArgs& a, Stream stream) {
  const Geometry geo = geometry(a.sizes);
  const int64_t steps = geo.batch * geo.length * geo.groups, summaries = geo.batch * geo.groups * geo.chunks;
  const int64_t rows = geo.batch * geo.length;
  const int64_t row_tiles = (rows + kTimestepNormRowTile - 1) / kTimestepNormRowTile;
  dispatch_data_type(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    using S = math_t<T>;
    const T* x = static_cast<const T*>(a.x);
    const T* dy = static_cast<const T*>(a.dy);
    const T* weight = static_cast<const T*>(a.weight);
    const S* step_mean = static_cast<const S*>(a.step_mean);
    const S* step_rstd = static_cast<const S*>(a.step_rstd);
    S* step_m = static_cast<S*>(a.workspace);
    S* step_p = step_m + steps;
    S* step_s = step_p + steps;
    S* map_scale = step_s + steps;
    S* map_cross = map_scale + summaries;
    S* map_mean = map_cross + summaries;
    S* map_var = map_mean + summaries;
    S* partial_dw = map_var + summaries;
    S* partial_db = partial_dw + row_tiles * geo.dim;

    if (steps > 0) {
      step_sums_kernel<T, S><<<blocks_for(steps * 32), kThreads, 0, stream>>>(geo, x, dy, weight, step_mean, step_m,
                                                                               step_p, step_s);
      MGL_CUDA_CHECK_LAUNCH();
    }
    const SweepInputs<S> sweep{geo,       a.mask,    step_m, step_p, step_s, step_mean,
                               step_rstd, static_cast<const S*>(a.mean_in), a.chunk_count};
    launch_chunks(ChunkAdjoints<S>{sweep, map_scale, map_cross, map_mean, map_var}, geo, stream);
    launch_column_scan(BackwardColumns<S>{geo, static_cast<const S*>(a.dmean_out), static_cast<const S*>(a.dvar_out),
                                          map_scale, map_cross, map_mean, map_var, static_cast<S*>(a.dmean_in),
                                          static_cast<S*>(a.dvar_in)},
                       geo, stream);
    launch_chunks(EmitAdjoints<S>{sweep, map_mean, map_var}, geo, stream);
    if (row_tiles > 0) {
      const dim3 grid(static_cast<unsigned>(smaller(row_tiles, 65535LL * 16)),
                      static_cast<unsigned>((geo.dim + kGradColumns - 1) / kGradColumns));
      input_grads_kernel<T, S><<<grid, dim3(kGradColumns, kGradRowLanes), 0, stream>>>(
          geo, a.mask, x, dy, weight, step_mean, step_rstd, step_m, step_p, step_s, static_cast<T*>(a.dx), partial_dw,
          partial_db, row_tiles);
      MGL_CUDA_CHECK_LAUNCH();
    }
    param_grads_kernel<T, S><<<blocks_for(geo.dim * 32), kThreads, 0, stream>>>(
        geo.dim, row_tiles, partial_dw, partial_db, static_cast<T*>(a.dweight), static_cast<T*>(a.dbias));
    MGL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mgl::cuda

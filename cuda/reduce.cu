// Reductions in f32 registers (f64 for f64), deterministic (a fixed combination order).
//
// Rows: one block per row (row_threads(cols) threads, grid-stride over rows). Each thread folds a
// strided slice of the row, consecutive threads reading consecutive elements (coalesced), then
// block_reduce combines the partials.
//
// Columns: one block of kColumnWidth x kColumnLanes threads per tile of kColumnWidth adjacent
// outputs (o, k..k+31) and slice of the reduced rows. threadIdx.x picks the column, so each warp reads
// one segment of a row of the [reduced, inner] slab (coalesced); the kColumnLanes warps take every
// kColumnLanes-th reduced index of the slice. The lanes' partials meet in shared memory and warp 0
// folds them in order. With one slice that is the result; with several (when the tiles alone are too
// few blocks to keep the GPU's memory system busy: a bias gradient has 24–48 tiles of 32768 rows, and
// one block per tile ran at a seventh of the bandwidth) each slice's sum goes to the workspace and a
// second kernel folds them in slice order.
#include "cuda/reduce.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

constexpr int kColumnWidth = 32;  // one warp across adjacent columns
constexpr int kColumnLanes = 16;  // warps per block, each over a share of the reduced indices
constexpr int64_t kTargetBlocks = 1024;  // column blocks worth slicing for (several per SM)
constexpr int64_t kMinSliceRows = 512;   // reduced rows per slice at least

template <ReduceOp Op, class M>
__device__ __forceinline__ M combine(M a, M b) {
  if constexpr (Op == ReduceOp::max) return (a != a || a > b) ? a : b;  // a NaN on either side wins
  else return a + b;
}

template <ReduceOp Op, class M>
__device__ __forceinline__ M identity() {
  return Op == ReduceOp::max ? M(-INFINITY) : M(0);
}

template <ReduceOp Op, class M>
__device__ __forceinline__ M finish(M acc, int64_t count) {
  return Op == ReduceOp::mean ? acc / M(count) : acc;
}

// Sums and means accumulate in f64 whatever the storage: a sum of values of mixed signs can be much
// smaller than the sum of their magnitudes, and f32 partials would then leave few correct bits (the
// kernels are memory-bound, so the wider adds cost nothing measurable). Maxima are exact in any type.
template <class T, ReduceOp Op>
using accumulator_t = std::conditional_t<Op == ReduceOp::max, math_t<T>, double>;

template <class T, ReduceOp Op>
__global__ void reduce_rows_kernel(const T* in, T* out, int64_t rows, int64_t cols) {
  using M = accumulator_t<T, Op>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* p = in + row * cols;
    M acc = identity<Op, M>();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc = combine<Op>(acc, M(load_math(p + c)));
    acc = block_reduce(acc, [](M a, M b) { return combine<Op>(a, b); });
    if (threadIdx.x == 0) store_math(out + row, static_cast<math_t<T>>(finish<Op>(acc, cols)));
  }
}

// Work item w = (tile, slice), slices fastest. With slices == 1 it writes out, else partials[o, slice, k].
template <class T, ReduceOp Op>
__global__ void reduce_columns_kernel(const T* in, T* out, double* partials, int64_t outer, int64_t reduced,
                                      int64_t inner, int64_t slices) {
  using M = accumulator_t<T, Op>;
  __shared__ M partial[kColumnLanes][kColumnWidth];
  const int64_t tiles_per_slab = (inner + kColumnWidth - 1) / kColumnWidth;
  const int64_t slice_rows = (reduced + slices - 1) / slices;
  for (int64_t w = blockIdx.x; w < outer * tiles_per_slab * slices; w += gridDim.x) {
    const int64_t tile = w / slices, slice = w % slices;
    const int64_t o = tile / tiles_per_slab, k = (tile % tiles_per_slab) * kColumnWidth + threadIdx.x;
    const int64_t r0 = slice * slice_rows, r1 = r0 + slice_rows < reduced ? r0 + slice_rows : reduced;
    M acc = identity<Op, M>();
    if (k < inner) {
      const T* p = in + o * reduced * inner + k;
      for (int64_t r = r0 + threadIdx.y; r < r1; r += kColumnLanes) acc = combine<Op>(acc, M(load_math(p + r * inner)));
    }
    partial[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && k < inner) {
      for (int lane = 1; lane < kColumnLanes; ++lane) acc = combine<Op>(acc, partial[lane][threadIdx.x]);
      if (slices == 1) store_math(out + o * inner + k, static_cast<math_t<T>>(finish<Op>(acc, reduced)));
      else partials[(o * slices + slice) * inner + k] = double(acc);
    }
    __syncthreads();  // `partial` is rewritten for the next tile
  }
}

// One thread per output (o, k): the slices' partials folded in slice order.
template <class T, ReduceOp Op>
__global__ void fold_column_slices_kernel(const double* partials, T* out, int64_t outer, int64_t reduced,
                                          int64_t inner, int64_t slices) {
  using M = accumulator_t<T, Op>;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < outer * inner; i += stride) {
    const int64_t o = i / inner, k = i % inner;
    M acc = identity<Op, M>();
    for (int64_t s = 0; s < slices; ++s) acc = combine<Op>(acc, M(partials[(o * slices + s) * inner + k]));
    store_math(out + i, static_cast<math_t<T>>(finish<Op>(acc, reduced)));
  }
}

// Slices of the reduced rows: one unless the tiles alone are fewer than kTargetBlocks and the rows allow
// slices of kMinSliceRows.
int64_t column_slices(const ReduceColumnsArgs& a) {
  const int64_t tiles = a.outer * ((a.inner + kColumnWidth - 1) / kColumnWidth);
  const int64_t by_rows = a.reduced / kMinSliceRows;
  if (tiles >= kTargetBlocks || by_rows < 2) return 1;
  const int64_t wanted = (kTargetBlocks + tiles - 1) / tiles;
  return wanted < by_rows ? wanted : by_rows;
}

// f(T{}, op constant): T a floating storage type, the op a compile-time ReduceOp.
template <class F>
void dispatch_reduce(ReduceOp op, DType dtype, F&& f) {
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_floating_storage<T>) {
      switch (op) {
        case ReduceOp::sum: return f(T{}, std::integral_constant<ReduceOp, ReduceOp::sum>{});
        case ReduceOp::max: return f(T{}, std::integral_constant<ReduceOp, ReduceOp::max>{});
        case ReduceOp::mean: return f(T{}, std::integral_constant<ReduceOp, ReduceOp::mean>{});
      }
    } else {
      MGL_FAIL("reduce: unsupported dtype ", dtype_name(dtype));
    }
  });
}

}  // namespace

void reduce_rows(const ReduceRowsArgs& args, Stream stream) {
  if (args.rows == 0) return;
  dispatch_reduce(args.op, args.dtype, [&](auto tag, auto op_constant) {
    using T = decltype(tag);
    reduce_rows_kernel<T, decltype(op_constant)::value><<<row_blocks(args.rows), row_threads(args.cols), 0, stream>>>(
        static_cast<const T*>(args.in), static_cast<T*>(args.out), args.rows, args.cols);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

int64_t reduce_columns_workspace_bytes(const ReduceColumnsArgs& args) {
  const int64_t slices = column_slices(args);
  return slices == 1 ? 0 : args.outer * slices * args.inner * int64_t(sizeof(double));
}

void reduce_columns(const ReduceColumnsArgs& args, Stream stream) {
  if (args.outer == 0 || args.inner == 0) return;
  const int64_t slices = column_slices(args);
  MGL_CHECK(slices == 1 || args.workspace, "reduce_columns: ", slices, " slices need a workspace of ",
            reduce_columns_workspace_bytes(args), " bytes");
  const int64_t items = args.outer * ((args.inner + kColumnWidth - 1) / kColumnWidth) * slices;
  auto* partials = static_cast<double*>(args.workspace);
  dispatch_reduce(args.op, args.dtype, [&](auto tag, auto op_constant) {
    using T = decltype(tag);
    constexpr ReduceOp Op = decltype(op_constant)::value;
    auto* out = static_cast<T*>(args.out);
    reduce_columns_kernel<T, Op><<<row_blocks(items), dim3(kColumnWidth, kColumnLanes), 0, stream>>>(
        static_cast<const T*>(args.in), out, partials, args.outer, args.reduced, args.inner, slices);
    if (slices > 1) {
      fold_column_slices_kernel<T, Op><<<blocks_for(args.outer * args.inner), kThreads, 0, stream>>>(
          partials, out, args.outer, args.reduced, args.inner, slices);
    }
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

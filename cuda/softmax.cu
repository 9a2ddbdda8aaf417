// Softmax / log-softmax: one block per row (row_threads(cols) threads, grid-stride over rows), so
// rows of any length (a 256K vocabulary) work. The forward reads the row twice: once to build the
// running max and sum of exp(x - max) in one pass (MaxSum, the online softmax), once to write
// exp(x - max) / sum or x - max - log(sum). The backward reads y and dy twice: once for the row
// sum, once to write dx. Consecutive threads touch consecutive elements (coalesced).
#include "cuda/row_reduce.cuh"
#include "cuda/softmax.h"

namespace mgl::cuda {

namespace {

template <class T, bool Log>
__global__ void softmax_forward_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  using M = math_t<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* in = x + row * cols;
    T* out = y + row * cols;
    MaxSum<M> state{M(-INFINITY), M(0)};
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) state = fold(state, load_math(in + c));
    state = block_reduce(state, [](MaxSum<M> a, MaxSum<M> b) { return merge(a, b); });
    if constexpr (Log) {
      const M shift = state.max + log(state.sum);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) store_math(out + c, load_math(in + c) - shift);
    } else {
      const M inverse = M(1) / state.sum;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        store_math(out + c, exp(load_math(in + c) - state.max) * inverse);
    }
  }
}

template <class T, bool Log>
__global__ void softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  using M = math_t<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* py = y + row * cols;
    const T* pdy = dy + row * cols;
    T* pdx = dx + row * cols;
    // The row sum and the difference grad - total are taken in f64: for a peaked distribution the
    // difference cancels almost completely at the peak, and f32 would leave only a few correct bits.
    double total = 0;  // sum(dy) for log-softmax, sum(dy * y) for softmax
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      total += Log ? double(load_math(pdy + c)) : double(load_math(pdy + c)) * double(load_math(py + c));
    total = block_reduce(total, [](double a, double b) { return a + b; });
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double out = load_math(py + c), grad = load_math(pdy + c);
      store_math(pdx + c, static_cast<M>(Log ? grad - exp(out) * total : out * (grad - total)));
    }
  }
}

template <class F>
void dispatch_softmax(bool log, DType dtype, F&& f) {
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_floating_storage<T>) {
      if (log) f(T{}, std::true_type{});
      else f(T{}, std::false_type{});
    } else {
      MGL_FAIL("softmax: unsupported dtype ", dtype_name(dtype));
    }
  });
}

}  // namespace

void softmax_forward(const SoftmaxForwardArgs& args, Stream stream) {
  const int64_t rows = args.rows, cols = args.cols;
  if (rows == 0 || cols == 0) return;
  dispatch_softmax(args.log, args.dtype, [&](auto tag, auto log_constant) {
    using T = decltype(tag);
    softmax_forward_kernel<T, decltype(log_constant)::value><<<row_blocks(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(args.x), static_cast<T*>(args.y), rows, cols);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void softmax_backward(const SoftmaxBackwardArgs& args, Stream stream) {
  const int64_t rows = args.rows, cols = args.cols;
  if (rows == 0 || cols == 0) return;
  dispatch_softmax(args.log, args.dtype, [&](auto tag, auto log_constant) {
    using T = decltype(tag);
    softmax_backward_kernel<T, decltype(log_constant)::value><<<row_blocks(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(args.y), static_cast<const T*>(args.dy), static_cast<T*>(args.dx), rows, cols);
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

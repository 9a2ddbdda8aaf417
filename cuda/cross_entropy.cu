// Cross-entropy: one block per row (row_threads(cols) threads, grid-stride over rows), a loop
// over the row, so vocabularies of any size (256K) work. The forward reads each row once (the
// online max / sum of exp, MaxSum) plus the target's logit; it keeps the row's log-sum-exp so the
// backward can form softmax = exp(x - lse) in a single read of the row. Math in f32 (f64 for f64), by the
// formulas of base/cross_entropy_math.h.
#include "cuda/cross_entropy.h"
#include "cuda/row_reduce.cuh"

namespace mgl::cuda {

namespace {

template <class T, class I>
__global__ void cross_entropy_forward_kernel(const T* logits, const I* targets, int64_t rows, int64_t cols,
                                             int64_t ignore_index, math_t<T>* row_loss, math_t<T>* row_lse) {
  using M = math_t<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t target = targets[row];
    // The whole block shares the row, so every thread takes this branch together: none is left
    // waiting alone in the block_reduce below.
    if (target == ignore_index) {
      if (threadIdx.x == 0) row_loss[row] = row_lse[row] = M(0);
      continue;
    }
    const T* x = logits + row * cols;
    MaxSum<M> state{M(-INFINITY), M(0)};
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) state = fold(state, load_math(x + c));
    state = block_reduce(state, [](MaxSum<M> a, MaxSum<M> b) { return merge(a, b); });
    if (threadIdx.x == 0) {
      const M lse = state.max + log(state.sum);
      row_lse[row] = lse;
      row_loss[row] = cross_entropy_row_loss(lse, load_math(x + target));
    }
  }
}

// D, the gradient's storage type, is T or bf16 for f32 logits: its math type is T's either way.
template <class T, class D, class I>
__global__ void cross_entropy_backward_kernel(const T* logits, const I* targets, const math_t<T>* row_lse,
                                              const math_t<T>* dloss, math_t<T> scale, int64_t rows, int64_t cols,
                                              int64_t ignore_index, D* dlogits) {
  using M = math_t<T>;
  const M g = *dloss * scale;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t target = targets[row];
    const T* x = logits + row * cols;
    D* dx = dlogits + row * cols;
    if (target == ignore_index) {
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) store_math(dx + c, M(0));
      continue;
    }
    const M lse = row_lse[row];
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      store_math(dx + c, cross_entropy_logit_grad(load_math(x + c), lse, c == target, g));
  }
}

// f(T{}, I{}): T the logits' storage type (floating), I the targets' integer type.
template <class F>
void dispatch_cross_entropy(DType dtype, DType target_dtype, F&& f) {
  dispatch_device_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (is_floating_storage<T>) {
      if (target_dtype == DType::i32) f(T{}, int32_t{});
      else if (target_dtype == DType::i64) f(T{}, int64_t{});
      else MGL_FAIL("cross_entropy: targets must be i32 or i64, got ", dtype_name(target_dtype));
    } else {
      MGL_FAIL("cross_entropy: unsupported logits dtype ", dtype_name(dtype));
    }
  });
}

}  // namespace

void cross_entropy_forward(const CrossEntropyForwardArgs& a, Stream stream) {
  if (a.rows == 0) return;
  dispatch_cross_entropy(a.dtype, a.target_dtype, [&](auto tag, auto target_tag) {
    using T = decltype(tag);
    using I = decltype(target_tag);
    using M = math_t<T>;
    cross_entropy_forward_kernel<T, I><<<row_blocks(a.rows), row_threads(a.cols), 0, stream>>>(
        static_cast<const T*>(a.logits), static_cast<const I*>(a.targets), a.rows, a.cols, a.ignore_index,
        static_cast<M*>(a.row_loss), static_cast<M*>(a.row_lse));
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward(const CrossEntropyBackwardArgs& a, Stream stream) {
  if (a.rows == 0 || a.cols == 0) return;
  const bool narrowed = a.dtype == DType::f32 && a.dlogits_dtype == DType::bf16;
  MGL_CHECK(a.dlogits_dtype == a.dtype || narrowed, "cross_entropy: no ", dtype_name(a.dlogits_dtype),
            " gradient of ", dtype_name(a.dtype), " logits");
  dispatch_cross_entropy(a.dtype, a.target_dtype, [&](auto tag, auto target_tag) {
    using T = decltype(tag);
    using I = decltype(target_tag);
    using M = math_t<T>;
    auto launch = [&](auto gradient_tag) {
      using D = decltype(gradient_tag);
      cross_entropy_backward_kernel<T, D, I><<<row_blocks(a.rows), row_threads(a.cols), 0, stream>>>(
          static_cast<const T*>(a.logits), static_cast<const I*>(a.targets), static_cast<const M*>(a.row_lse),
          static_cast<const M*>(a.dloss), static_cast<M>(a.scale), a.rows, a.cols, a.ignore_index,
          static_cast<D*>(a.dlogits));
    };
    if constexpr (std::is_same_v<T, float>) {
      if (narrowed) return launch(__nv_bfloat16{});
    }
    launch(T{});
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

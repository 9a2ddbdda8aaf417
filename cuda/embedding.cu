// Embedding kernels.
//
// Forward: one thread per output element (grid-stride). Consecutive threads read consecutive
// columns of one weight row, so reads and writes are coalesced when the weight is row-major.
//
// Backward: one block per (group of equal ids, tile of kThreads columns). Thread c of the block
// walks the group's positions in increasing order and sums dy[position, c] in f32 (f64 for f64)
// registers, then writes the sum once. No two blocks write the same element, so there are no
// atomics and the result does not depend on scheduling (it equals the CPU loop, which adds in the
// same order). The price: a very frequent id makes one long group, summed by one block.
#include "cuda/common.cuh"
#include "cuda/embedding.h"

namespace mgl::cuda {

namespace {

template <class T, class Id>
__global__ void embedding_forward_kernel(const T* weight, int64_t row_stride, int64_t col_stride, const Id* ids,
                                         int64_t count, int64_t dim, T* out) {
  const int64_t total = count * dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / dim, c = i % dim;
    out[i] = weight[static_cast<int64_t>(ids[r]) * row_stride + c * col_stride];
  }
}

template <class T, class M>
__global__ void embedding_backward_kernel(const T* dy, int64_t dim, const int64_t* rows, const int64_t* starts,
                                          const int64_t* positions, int64_t groups, T* dweight) {
  for (int64_t g = blockIdx.x; g < groups; g += gridDim.x) {
    for (int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; c < dim; c += int64_t(gridDim.y) * blockDim.x) {
      M acc = 0;
      for (int64_t k = starts[g]; k < starts[g + 1]; ++k)
        acc += static_cast<M>(load_as_double(dy + positions[k] * dim + c));
      store_from_double(dweight + rows[g] * dim + c, static_cast<double>(acc));
    }
  }
}

}  // namespace

void embedding_forward(const EmbeddingForwardArgs& args, Stream stream) {
  if (args.count * args.dim == 0) return;
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    auto launch = [&](auto id_tag) {
      using Id = decltype(id_tag);
      embedding_forward_kernel<<<blocks_for(args.count * args.dim), kThreads, 0, stream>>>(
          static_cast<const T*>(args.weight), args.row_stride, args.col_stride, static_cast<const Id*>(args.ids),
          args.count, args.dim, static_cast<T*>(args.out));
    };
    if (args.id_dtype == DType::i32) launch(int32_t{});
    else launch(int64_t{});
  });
  MGL_CUDA_CHECK_LAUNCH();
}

void embedding_backward(const EmbeddingBackwardArgs& args, Stream stream) {
  const int64_t groups = args.groups, dim = args.dim;
  if (groups == 0 || dim == 0) return;
  // x: groups (grid-stride beyond the cap); y: column tiles (at most 65535, the y-dimension limit).
  const int64_t tiles = (dim + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(groups < 65535 * 16 ? groups : 65535 * 16),
                  static_cast<unsigned>(tiles < 65535 ? tiles : 65535));
  dispatch_device_type(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    using M = std::conditional_t<std::is_same_v<T, double>, double, float>;
    embedding_backward_kernel<T, M><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(args.dy), dim, args.rows,
                                                                    args.starts, args.positions, groups,
                                                                    static_cast<T*>(args.dweight));
  });
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

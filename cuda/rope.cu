// Rotary position embedding: each thread owns one pair index i (so it evaluates the frequency
// theta_i once) and walks over rows (token, head) with a grid-stride loop.
//
// Launch: blocks of 32 x 8 threads. threadIdx.x + 32 * blockIdx.y is the pair, so a warp reads 32
// adjacent pairs of one row (256 contiguous bytes in f32); threadIdx.y + 8 * blockIdx.x is the
// first row, stepping by 8 * gridDim.x.
#include "cuda/common.cuh"
#include "cuda/rope.h"

namespace mgl::cuda {

namespace {

constexpr int kPairsPerBlock = 32;
constexpr int kRowsPerBlock = 8;

template <class T>
__global__ void rope_kernel(const T* x, T* y, RopeShape shape, float sign) {
  const int64_t pairs = shape.dim / 2;
  const int64_t pair = blockIdx.y * int64_t(kPairsPerBlock) + threadIdx.x;
  if (pair >= pairs) return;
  const float theta = rope_frequency<float>(pair, shape.dim, shape.base);
  const int64_t rows = shape.batch * shape.seq * shape.heads;
  for (int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t t = (row / shape.heads) % shape.seq;
    const float angle = static_cast<float>(rope_position(shape, t)) * theta;
    float sine, cosine;
    sincosf(angle, &sine, &cosine);
    sine *= sign;
    const int64_t at = row * shape.dim + 2 * pair;
    const float x0 = to_float(x[at]), x1 = to_float(x[at + 1]);
    y[at] = from_float<T>(x0 * cosine - x1 * sine);
    y[at + 1] = from_float<T>(x0 * sine + x1 * cosine);
  }
}

}  // namespace

void rope(const RopeArgs& args, Stream stream) {
  const RopeShape& shape = args.shape;
  const int64_t rows = shape.batch * shape.seq * shape.heads, pairs = shape.dim / 2;
  if (rows == 0 || pairs == 0) return;
  const dim3 block(kPairsPerBlock, kRowsPerBlock);
  const dim3 grid(blocks_for(rows, kRowsPerBlock), static_cast<unsigned>((pairs + kPairsPerBlock - 1) / kPairsPerBlock));
  const float sign = args.direction > 0 ? 1.0f : -1.0f;
  switch (args.dtype) {
    case DType::f32:
      rope_kernel<<<grid, block, 0, stream>>>(static_cast<const float*>(args.x), static_cast<float*>(args.y), shape,
                                              sign);
      break;
    case DType::bf16:
      rope_kernel<<<grid, block, 0, stream>>>(static_cast<const __nv_bfloat16*>(args.x),
                                              static_cast<__nv_bfloat16*>(args.y), shape, sign);
      break;
    default: MGL_FAIL("rope: the CUDA kernel supports f32 and bf16, got ", dtype_name(args.dtype));
  }
  MGL_CUDA_CHECK_LAUNCH();
}

}  // namespace mgl::cuda

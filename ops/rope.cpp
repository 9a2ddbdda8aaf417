// rope: rotary position embedding of x [B, L, H, d] with interleaved pairs (x_{2i}, x_{2i+1}):
//   (y_{2i}, y_{2i+1}) = R(p_t θ_i) (x_{2i}, x_{2i+1}),   R(a) = [[cos a, -sin a], [sin a, cos a]],
//   θ_i = base^(-2i/d),   p_t = start_position + (t mod chunk_size),
// i.e. the pair read as the complex number x_{2i} + i x_{2i+1} is multiplied by e^{i p_t θ_i}.
// Computed in f32 (f64 for f64) and rounded back to x's dtype.
// Backward: R(a) is orthogonal with R(a)^T = R(-a), so dx = R(-p_t θ_i) dy (rotation by -angle).
#include "ops/rope.h"

#include <cmath>

#include "autograd/node.h"
#include "base/rope_math.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/rope.h"
#include "ops/ops.h"

namespace mgl {

namespace {

// The CPU reference: the formula above, one pair at a time.
template <class T>
void rope_cpu(const T* x, T* y, const RopeShape& shape, int direction) {
  using M = typename compute_type<T>::type;
  const int64_t pairs = shape.dim / 2;
  std::vector<M> theta(pairs);
  for (int64_t i = 0; i < pairs; ++i) theta[i] = rope_frequency<M>(i, shape.dim, shape.base);
  const int64_t rows = shape.batch * shape.seq * shape.heads;
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = (row / shape.heads) % shape.seq;
    const M position = static_cast<M>(rope_position(shape, t));
    for (int64_t i = 0; i < pairs; ++i) {
      const M angle = position * theta[i];
      const M cosine = std::cos(angle), sine = direction > 0 ? std::sin(angle) : -std::sin(angle);
      const int64_t at = row * shape.dim + 2 * i;
      const M x0 = static_cast<M>(x[at]), x1 = static_cast<M>(x[at + 1]);
      y[at] = static_cast<T>(x0 * cosine - x1 * sine);
      y[at + 1] = static_cast<T>(x0 * sine + x1 * cosine);
    }
  }
}

// y = x rotated by +angle (direction 1) or -angle (direction -1); x contiguous.
Tensor rotate(const Tensor& x, const RopeShape& shape, int direction) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), "rope", [&](auto tag) {
      using T = decltype(tag);
      rope_cpu(static_cast<const T*>(x.raw_data()), y.data<T>(), shape, direction);
    });
    return y;
  }
  DeviceGuard guard(x.device());
  cuda::RopeArgs args;
  args.shape = shape;
  args.direction = direction;
  args.dtype = x.dtype();
  args.x = x.raw_data();
  args.y = y.raw_data();
  MGL_ON_CUDA(cuda::rope(args, compute_stream(x.device())));
  return y;
}

}  // namespace

Tensor rope(const Tensor& x, int64_t chunk_size, int64_t start_position, double base) {
  MGL_CHECK(x.defined(), "rope: input is an undefined tensor");
  MGL_CHECK(is_floating(x.dtype()), "rope: expected a floating tensor, got ", x.describe());
  MGL_CHECK(x.dim() == 4, "rope: expected x of shape [batch, length, heads, head_dim], got ", x.describe());
  MGL_CHECK(x.size(3) % 2 == 0, "rope: head_dim must be even (pairs are rotated), got ", x.describe());
  MGL_CHECK(!x.is_cuda() || x.dtype() != DType::f64, "rope: CUDA supports f32 and bf16, got ", x.describe());
  MGL_CHECK(chunk_size >= 1, "rope: chunk_size must be positive, got ", chunk_size);
  MGL_CHECK(start_position >= 0 && start_position < chunk_size, "rope: start_position ", start_position,
            " outside the chunk [0, ", chunk_size, ")");
  MGL_CHECK(start_position == 0 || start_position + x.size(1) <= chunk_size, "rope: ", x.size(1),
            " tokens from start_position ", start_position, " cross the end of the chunk of ", chunk_size);
  MGL_CHECK(base > 0.0, "rope: base must be positive, got ", base);

  const Tensor input = contiguous(x);
  const RopeShape shape{input.size(0), input.size(1), input.size(2), input.size(3), chunk_size, start_position, base};
  Tensor y = rotate(input, shape, 1);
  autograd::record("rope", {input}, {y}, [shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{rotate(contiguous(g[0]), shape, -1)};
  });
  return y;
}

}  // namespace mgl

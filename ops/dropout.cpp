// dropout (training, 0 < p < 1): y_i = x_i * m_i / (1 - p), with the keep mask m_i = [u_i >= p] and
// u_i the Philox uniform of element i (row-major) in a stream (seed, offset) taken from the
// generator, so each element survives with probability 1 - p and E[y] = x.
// Backward: dx_i = dy_i * m_i / (1 - p), the same mask regenerated from the saved (seed, offset):
// the mask is never stored, and CPU and CUDA draw it identically.
// With p = 0 or outside training, dropout is the identity and returns x itself.
#include "autograd/node.h"
#include "base/philox.h"
#include "core/cuda_context.h"
#include "core/strided.h"
#include "cuda/dropout.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

namespace {

// x * mask / (1 - p) for the mask of `stream`, as a new contiguous tensor (forward and backward).
Tensor apply_mask(const Tensor& x, double p, const Generator& stream) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const double scale = 1.0 / (1.0 - p);
  if (x.is_cpu()) {
    dispatch_floating(x.dtype(), "dropout", [&](auto tag) {
      using T = decltype(tag);
      using M = typename compute_type<T>::type;
      const T* in = static_cast<const T*>(x.raw_data());
      T* o = out.data<T>();
      const M s = static_cast<M>(scale);
      int64_t i = 0;
      for_each_offset<1>(x.shape(), {x.strides()}, [&](const auto& offsets) {
        const bool keep = static_cast<double>(philox::uniform(stream.seed, stream.offset, i)) >= p;
        o[i++] = keep ? T(static_cast<M>(in[offsets[0]]) * s) : T(M(0));
      });
    });
    return out;
  }
  DeviceGuard guard(x.device());
  cuda::DropoutArgs args;
  args.count = x.numel();
  args.dtype = x.dtype();
  args.seed = stream.seed;
  args.offset = stream.offset;
  args.p = p;
  args.scale = scale;
  args.x = x.raw_data();
  args.x_layout = layout_of(x);
  args.out = out.raw_data();
  MGL_ON_CUDA(cuda::dropout(args, compute_stream(x.device())));
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  detail::check_floating("dropout", x);
  MGL_CHECK(p >= 0.0 && p < 1.0, "dropout: the drop probability p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  const Generator stream = gen.take();
  Tensor y = apply_mask(x, p, stream);
  autograd::record("dropout", {x}, {y}, [p, stream](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{apply_mask(g[0], p, stream)};
  });
  return y;
}

}  // namespace mgl

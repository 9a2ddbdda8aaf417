// Factories shaped like an existing tensor, and arange. Not differentiable (they ignore values).
#include "ops/ops.h"

namespace mgl {

Tensor zeros_like(const Tensor& x) { return Tensor::zeros(x.shape(), x.dtype(), x.device()); }
Tensor ones_like(const Tensor& x) { return Tensor::ones(x.shape(), x.dtype(), x.device()); }
Tensor full_like(const Tensor& x, double value) { return Tensor::full(x.shape(), value, x.dtype(), x.device()); }

Tensor arange(int64_t n, DType dtype, Device device) {
  MGL_CHECK(n >= 0, "arange: negative length ", n);
  Tensor host = Tensor::empty({n}, DType::f64);
  for (int64_t i = 0; i < n; ++i) host.data<double>()[i] = static_cast<double>(i);
  Tensor out = Tensor::empty({n}, dtype, device);
  copy_(out, host);
  return out;
}

}  // namespace mgl

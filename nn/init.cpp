#include "nn/init.h"

namespace mgl::nn::init {

namespace {

Generator& generator_of(const InitOptions& options) {
  return options.generator ? *options.generator : default_generator();
}

// The host draw, converted to the options' dtype and moved to their device.
Tensor place(const Tensor& host, const InitOptions& options) {
  if (host.dtype() == options.dtype && options.device.is_cpu()) return host;
  Tensor out = Tensor::empty(host.shape(), options.dtype, options.device);
  copy_(out, host);
  return out;
}

}  // namespace

Tensor normal(const Shape& shape, double std, const InitOptions& options) {
  Tensor host = Tensor::empty(shape, DType::f32);
  normal_(host, 0.0, std, generator_of(options));
  return place(host, options);
}

Tensor truncated_normal(const Shape& shape, double std, double bound, const InitOptions& options) {
  Tensor host = Tensor::empty(shape, DType::f32);
  truncated_normal_(host, 0.0, std, bound, generator_of(options));
  return place(host, options);
}

Tensor zeros(const Shape& shape, const InitOptions& options) {
  return Tensor::zeros(shape, options.dtype, options.device);
}

}  // namespace mgl::nn::init

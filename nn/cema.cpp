#include "nn/cema.h"

#include <cmath>
#include <numeric>

#include "base/philox.h"

namespace mgl::nn {

namespace {

// theta: the base angles sigmoid(theta) are D^(-k/D) for k = 1..D (log-uniform between 1/D and
// about 1), assigned to channels in a random order (a Fisher-Yates shuffle driven by Philox).
Tensor theta_init(int64_t dim, const InitOptions& options) {
  Generator& gen = options.generator ? *options.generator : default_generator();
  const Generator stream = gen.take();
  std::vector<int64_t> order(dim);
  std::iota(order.begin(), order.end(), int64_t{1});
  for (int64_t i = dim - 1; i > 0; --i) {
    const double u = philox::uniform(stream.seed, stream.offset, static_cast<uint64_t>(i));
    std::swap(order[i], order[std::min<int64_t>(i, static_cast<int64_t>(u * static_cast<double>(i + 1)))]);
  }
  std::vector<double> values(dim);
  for (int64_t d = 0; d < dim; ++d) {
    const double f = std::exp(-static_cast<double>(order[d]) * std::log(static_cast<double>(dim)) / dim);
    values[d] = std::log(f / (1.0 - f));  // logit
  }
  Tensor out = Tensor::empty({dim, 1, 1}, options.dtype, options.device);
  copy_(out, Tensor::from_vector(values, {dim, 1, 1}));
  return out;
}

// gamma: real part normal(0, 1), imaginary part 0.
Tensor gamma_init(int64_t dim, int64_t modes, const InitOptions& options) {
  const Tensor real = init::normal({dim, modes, 1}, 1.0, InitOptions{std::nullopt, DType::f64, Device::cpu(),
                                                                       options.generator});
  Tensor host = Tensor::zeros({dim, modes, 2}, DType::f64);
  copy_(host.as_strided({dim, modes, 1}, {modes * 2, 2, 1}, 0), real);
  Tensor out = Tensor::empty({dim, modes, 2}, options.dtype, options.device);
  copy_(out, host);
  return out;
}

}  // namespace

Cema::Cema(int64_t dim, int64_t modes, const InitOptions& options) {
  MGL_CHECK(dim > 1 && modes > 0, "Cema: need dim > 1 and modes > 0, got dim ", dim, ", modes ", modes);
  // Every parameter is per channel (dim 0): under tensor parallelism each rank keeps its channels' rows.
  const Sharding by_channel{0};
  alpha_ = register_parameter("alpha", init::normal({dim, modes, 1}, 0.2, options), by_channel);
  delta_ = register_parameter("delta", init::normal({dim, modes, 1}, 0.2, options), by_channel);
  theta_ = register_parameter("theta", theta_init(dim, options), by_channel);
  gamma_ = register_parameter("gamma", gamma_init(dim, modes, options), by_channel);
  omega_ = register_parameter("omega", init::truncated_normal({dim, 1}, 0.25, 1.0, options), by_channel);
}

Tensor Cema::forward(const Tensor& x, const Tensor& h_in, Tensor* h_out) const {
  CemaOutput out = cema(x, alpha_, delta_, theta_, gamma_, omega_, h_in, h_out != nullptr);
  if (h_out) *h_out = out.h_out;
  return out.y;
}

CemaCoefficients Cema::coefficients() const { return cema_coefficients(alpha_, delta_, theta_, gamma_, omega_); }

}  // namespace mgl::nn

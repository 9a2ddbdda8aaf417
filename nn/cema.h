#pragma once
// CEMA as a module (docs/megalodon.md §2.3): the raw parameters under their official names and shapes, with the
// initialisation of §2.3.1; the math is the op in ops/cema.h.
#include "nn/init.h"
#include "nn/module.h"
#include "ops/cema.h"

namespace mgl::nn {

class Cema : public Module {
 public:
  // alpha, delta ~ normal(0, 0.2) [D, N, 1]; theta = logit of a random permutation of
  // D^(-k/D), k = 1..D [D, 1, 1]; gamma [D, N, 2] with real part ~ normal(0, 1), imaginary 0;
  // omega ~ normal(0, 0.25) truncated to [-1, 1] [D, 1].
  Cema(int64_t dim, int64_t modes, const InitOptions& options = {});
  // x [B, L, D]; h_in [B, D, N, 2] or undefined (zero state). `h_out` non-null: receives the state
  // after the last token (differentiable).
  Tensor forward(const Tensor& x, const Tensor& h_in = {}, Tensor* h_out = nullptr) const;
  CemaCoefficients coefficients() const;  // for one-token decoding
  // The raw parameters (a decoder derives its own coefficients in its own dtype and device).
  const Tensor& alpha() const { return alpha_; }
  const Tensor& delta() const { return delta_; }
  const Tensor& theta() const { return theta_; }
  const Tensor& gamma() const { return gamma_; }
  const Tensor& omega() const { return omega_; }

 private:
  Tensor alpha_, delta_, theta_, gamma_, omega_;
};

}  // namespace mgl::nn

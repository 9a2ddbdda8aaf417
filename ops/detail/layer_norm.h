#pragma once
// The machinery shared by layer_norm and rms_norm: RMSNorm is LayerNorm without centring (the mean
// taken as 0) and without a bias, so both ops are one fused computation with a `center` switch.
// Defined in ops/layer_norm.cpp.
#include "core/tensor.h"

namespace mgl::detail {

// y = (x - mu) * rstd * weight + bias over the last dim, mu = center ? mean(x) : 0,
// rstd = (mean((x - mu)^2) + eps)^(-1/2); weight and bias [last dim] or undefined. Records one node
// named `op` whose backward is the analytic one (see cuda/layer_norm.h).
Tensor normalize_last_dim(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          bool center);

}  // namespace mgl::detail

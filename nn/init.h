#pragma once
// Parameter initialisation. Values are drawn on the host (Philox, from the given generator) and
// then converted and copied to the parameter's dtype and device, so a model starts from the same
// numbers whichever device it lives on.
#include <optional>

#include "core/random.h"
#include "core/tensor.h"

namespace mgl::nn {

// Where a layer creates its parameters, and how its weights are drawn.
struct InitOptions {
  std::optional<double> std;  // the weights' standard deviation; unset: the layer's default
  DType dtype = DType::f32;
  Device device = Device::cpu();
  Generator* generator = nullptr;  // unset: default_generator()
};

namespace init {

// normal(0, std)
Tensor normal(const Shape& shape, double std, const InitOptions& options);
// normal(0, std) redrawn outside [-bound, bound]
Tensor truncated_normal(const Shape& shape, double std, double bound, const InitOptions& options);
Tensor zeros(const Shape& shape, const InitOptions& options);

}  // namespace init

}  // namespace mgl::nn

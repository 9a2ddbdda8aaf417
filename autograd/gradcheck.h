#pragma once
// Finite-difference gradient check, in f64 on the CPU: the test every op must pass.
//
// The analytic side runs one backward pass with a random projection w_k of each output k as the
// seed, which yields d/dx [ sum_k <w_k, f_k(x)> ] for every input element at once. The numeric side
// perturbs each input element by ±eps and takes the central difference of the same scalar.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mgl::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;  // pass if |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  uint64_t seed = 1234;  // for the projection weights
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  int64_t checked = 0;  // number of input elements compared
  std::string report;   // first mismatches, with input, element index and both values
};

using MultiFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Every input that requires grad (f64, CPU) is checked; the others are held constant.
GradcheckResult gradcheck(const MultiFunction& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace mgl::autograd

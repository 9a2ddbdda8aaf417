#pragma once
// Shared by softmax, log_softmax and cross_entropy: the fused softmax node and the stable
// log-sum-exp of a row that the CPU references are built on.
#include <cmath>
#include <cstdint>

#include "core/tensor.h"

namespace mgl::detail {

// softmax (log = false) or log_softmax (log = true) of x over `dim`, recorded as one graph node
// named `op` whose backward is the analytic formula (see ops/softmax.cpp, ops/log_softmax.cpp).
Tensor softmax_node(const char* op, const Tensor& x, int64_t dim, bool log);

// log(sum_c exp(row[c])) = max + log(sum_c exp(row[c] - max)): subtracting the max first keeps
// every exp in (0, 1], so nothing overflows. In f64 for every dtype (the CPU loops built on it are
// the oracles of the CUDA kernels). An all -inf row gives NaN (-inf - -inf), like the kernels.
template <class T>
double log_sum_exp(const T* row, int64_t cols) {
  double max = -INFINITY;
  for (int64_t c = 0; c < cols; ++c) max = std::fmax(max, static_cast<double>(row[c]));
  double sum = 0;
  for (int64_t c = 0; c < cols; ++c) sum += std::exp(static_cast<double>(row[c]) - max);
  return max + std::log(sum);
}

}  // namespace mgl::detail

// log_softmax over dim: y_i = x_i - log sum_j exp(x_j) = x_i - m - log sum_j exp(x_j - m),
// m = max_j x_j (stable: every exp is at most 1). More accurate than log(softmax(x)) for very
// negative outputs, which softmax would round to 0.
// Backward: dy/dx = I - 1 softmax(x)^T, so dx = dy - exp(y) * sum_j dy_j.
// The fused node (shared with softmax) is in ops/softmax.cpp.
#include "ops/detail/softmax.h"
#include "ops/ops.h"

namespace mgl {

Tensor log_softmax(const Tensor& x, int64_t dim) { return detail::softmax_node("log_softmax", x, dim, true); }

}  // namespace mgl

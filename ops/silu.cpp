// silu: y = x * s, s = sigmoid(x).
// Backward: dx = dy * s * (1 + x * (1 - s)) in one elementwise pass (read dy and x, write dx): BinaryOp::silu_backward,
// base/silu_mul_math.h's silu_grad (the silu' that silu_mul's backward shares), computed in f32 (f64 for f64) and
// rounded once, on the CPU and in cuda/elementwise.cu's binary kernels. Like every backward it runs as plain
// computation: the engine sweeps under NoGradGuard, so no backward records a graph of its own.
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor silu(const Tensor& x) {
  return detail::unary_op("silu", UnaryOp::silu, x, detail::Save::input, [](const Tensor& dy, const Tensor& x) {
    return detail::binary_forward("silu backward", BinaryOp::silu_backward, dy, x);
  });
}

}  // namespace mgl

// pow: out = a ^ b (broadcasting).  Backward: da = dout * b * a^(b-1),  db = dout * out * log(a).
// pow (scalar): out = a ^ p.        Backward: da = dout * p * a^(p-1).
#include "autograd/node.h"
#include "ops/detail/elementwise.h"
#include "ops/ops.h"

namespace mgl {

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = detail::binary_forward("pow", BinaryOp::pow, a, b);
  autograd::record("pow", {a, b}, {out},
                   [a = a.detach(), b = b.detach(), out = out.detach()](const std::vector<Tensor>& g) {
                     const Tensor da = mul(mul(g[0], b), pow(a, add(b, -1.0)));
                     const Tensor db = mul(mul(g[0], out), log(a));
                     return std::vector<Tensor>{sum_to_shape(da, a.shape()), sum_to_shape(db, b.shape())};
                   });
  return out;
}

Tensor pow(const Tensor& a, double p) {
  Tensor out = detail::unary_forward("pow", UnaryOp::pow_scalar, a, p);
  autograd::record("pow_scalar", {a}, {out}, [a = a.detach(), p](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{mul(g[0], mul(pow(a, p - 1.0), p))};
  });
  return out;
}

}  // namespace mgl

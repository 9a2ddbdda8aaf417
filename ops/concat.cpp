// concat: y = [x_0, x_1, ...] joined along `dim`; input k fills y[..., o_k : o_k + n_k, ...] where n_k
// is its size along dim and o_k = n_0 + ... + n_{k-1}. The inputs must agree in every other dim.
// Backward: dx_k = dy[..., o_k : o_k + n_k, ...], i.e. split(dy, {n_0, n_1, ...}, dim) (views of dy).
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  MGL_CHECK(!xs.empty(), "concat: empty list of tensors");
  for (size_t k = 0; k < xs.size(); ++k) MGL_CHECK(xs[k].defined(), "concat: input ", k, " is an undefined tensor");
  const Tensor& first = xs[0];
  const int64_t d = normalize_dim(dim, first.dim(), "concat");
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor& x = xs[k];
    MGL_CHECK(x.dtype() == first.dtype() && x.device() == first.device(), "concat: input ", k, " is ", x.describe(),
              " but input 0 is ", first.describe(), " (all inputs need one dtype and device)");
    bool same = x.dim() == first.dim();
    for (int64_t e = 0; same && e < x.dim(); ++e) same = e == d || x.size(e) == first.size(e);
    MGL_CHECK(same, "concat: input ", k, " has shape ", shape_str(x.shape()), " but input 0 has ",
              shape_str(first.shape()), "; they must match in every dim except dim ", d);
    sizes.push_back(x.size(d));
    shape[d] += x.size(d);
  }

  Tensor y = Tensor::empty(shape, first.dtype(), first.device());
  int64_t start = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    copy_(slice(y, d, start, start + sizes[k]), xs[k]);
    start += sizes[k];
  }
  autograd::record("concat", xs, {y}, [sizes, d](const std::vector<Tensor>& g) { return split(g[0], sizes, d); });
  return y;
}

}  // namespace mgl

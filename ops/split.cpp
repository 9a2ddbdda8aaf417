// split: x cut along `dim` into consecutive pieces of the given sizes: piece k is the view
// x[..., o_k : o_k + n_k, ...] with o_k = n_0 + ... + n_{k-1}. The sizes must add up to x's size in dim.
// Backward (one node for all pieces): dx = concat of the pieces' gradients along dim, with zeros for
// pieces that no gradient reached.
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl {

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  MGL_CHECK(x.defined(), "split: input is an undefined tensor");
  const int64_t d = normalize_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t n : sizes) {
    MGL_CHECK(n >= 0, "split: negative size ", n, " in ", shape_str(sizes));
    total += n;
  }
  MGL_CHECK(total == x.size(d), "split: sizes ", shape_str(sizes), " add up to ", total, " but dim ", d, " of ",
            x.describe(), " has size ", x.size(d));

  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t n : sizes) {
    Shape shape = x.shape();
    shape[d] = n;
    pieces.push_back(x.as_strided(shape, x.strides(), x.offset() + start * x.stride(d)));
    start += n;
  }
  autograd::record("split", {x}, pieces,
                   [sizes, d, shape = x.shape(), dtype = x.dtype(), device = x.device()](const std::vector<Tensor>& g) {
                     std::vector<Tensor> grads;
                     for (size_t k = 0; k < sizes.size(); ++k) {
                       Shape piece = shape;
                       piece[d] = sizes[k];
                       grads.push_back(g[k].defined() ? g[k] : Tensor::zeros(piece, dtype, device));
                     }
                     return std::vector<Tensor>{concat(grads, d)};
                   });
  return pieces;
}

}  // namespace mgl

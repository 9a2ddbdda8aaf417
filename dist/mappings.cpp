#include "dist/mappings.h"

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "ops/ops.h"

namespace mgl::dist {

namespace {

int64_t checked_dim(const Tensor& x, int64_t dim, const char* op) {
  MGL_CHECK(x.defined() && is_floating(x.dtype()), op, ": expected a floating tensor, got ",
            x.defined() ? x.describe() : "undefined");
  if (dim < 0) dim += x.dim();
  MGL_CHECK(dim >= 0 && dim < x.dim(), op, ": dim out of range for ", x.describe());
  return dim;
}

// A fresh contiguous copy (communication writes in place; inputs stay untouched).
Tensor fresh(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  copy_(out, x);
  return out;
}

Tensor all_reduce_copy(const Tensor& x, const ProcessGroup& g) {
  Tensor out = fresh(x);
  g.on(x.device()).all_reduce(out, ReduceOp::sum)->wait();
  return out;
}

// The full tensor along `dim` from every rank's piece (rank order).
Tensor gather_along(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  NoGradGuard no_grad;
  const Tensor piece = contiguous(x);
  Tensor stacked = Tensor::empty({g.size() * piece.numel()}, x.dtype(), x.device());
  g.on(x.device()).all_gather(piece, stacked)->wait();
  if (dim == 0) {
    Shape shape = x.shape();
    shape[0] *= g.size();
    return reshape(stacked, shape);
  }
  std::vector<Tensor> pieces;
  for (int r = 0; r < g.size(); ++r)
    pieces.push_back(reshape(slice(stacked, 0, r * piece.numel(), (r + 1) * piece.numel()), x.shape()));
  return concat(pieces, dim);
}

// This rank's piece along `dim` of the sum over ranks of x.
Tensor reduce_scatter_along(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  NoGradGuard no_grad;
  const int64_t full = x.size(dim);
  MGL_CHECK(full % g.size() == 0, "reduce_scatter: dim ", dim, " of ", x.describe(), " does not split into ", g.size(),
            " equal pieces over the ", g.name(), " group");
  const int64_t n = full / g.size();
  // Piece r of every rank must be contiguous at offset r * piece size.
  std::vector<Tensor> pieces;
  for (int r = 0; r < g.size(); ++r) pieces.push_back(reshape(contiguous(slice(x, dim, r * n, (r + 1) * n)), {-1}));
  const Tensor staged = dim == 0 ? contiguous(x) : concat(pieces, 0);
  Shape shape = x.shape();
  shape[dim] = n;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  g.on(x.device()).reduce_scatter(staged, out)->wait();
  return out;
}

Tensor own_piece(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  NoGradGuard no_grad;
  const int64_t full = x.size(dim);
  MGL_CHECK(full % g.size() == 0, "scatter_to_group: dim ", dim, " of ", x.describe(), " does not split into ",
            g.size(), " equal pieces over the ", g.name(), " group");
  const int64_t n = full / g.size();
  return fresh(slice(x, dim, g.rank() * n, (g.rank() + 1) * n));
}

}  // namespace

Tensor copy_to_group(const Tensor& x, const ProcessGroup& g) {
  checked_dim(x, 0, "copy_to_group");
  const Tensor y = x.detach();  // a new handle on the same data: the node's output
  autograd::record("copy_to_group", {x}, {y}, [&g](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{all_reduce_copy(grads[0], g)};
  });
  return y;
}

Tensor reduce_from_group(const Tensor& x, const ProcessGroup& g) {
  checked_dim(x, 0, "reduce_from_group");
  Tensor y = all_reduce_copy(x, g);
  autograd::record("reduce_from_group", {x}, {y},
                   [](const std::vector<Tensor>& grads) { return std::vector<Tensor>{grads[0]}; });
  return y;
}

Tensor all_gather(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  dim = checked_dim(x, dim, "all_gather");
  Tensor y = gather_along(x, g, dim);
  autograd::record("all_gather", {x}, {y}, [&g, dim](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{reduce_scatter_along(grads[0], g, dim)};
  });
  return y;
}

Tensor reduce_scatter(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  dim = checked_dim(x, dim, "reduce_scatter");
  Tensor y = reduce_scatter_along(x, g, dim);
  autograd::record("reduce_scatter", {x}, {y}, [&g, dim](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{gather_along(grads[0], g, dim)};
  });
  return y;
}

Tensor scatter_to_group(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  dim = checked_dim(x, dim, "scatter_to_group");
  Tensor y = own_piece(x, g, dim);
  autograd::record("scatter_to_group", {x}, {y}, [&g, dim](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{gather_along(grads[0], g, dim)};
  });
  return y;
}

Tensor gather_from_group(const Tensor& x, const ProcessGroup& g, int64_t dim) {
  dim = checked_dim(x, dim, "gather_from_group");
  Tensor y = gather_along(x, g, dim);
  autograd::record("gather_from_group", {x}, {y}, [&g, dim](const std::vector<Tensor>& grads) {
    return std::vector<Tensor>{own_piece(grads[0], g, dim)};
  });
  return y;
}

Tensor receive_state(const Shape& shape, DType dtype, const Device& device, const ProcessGroup& g, int peer, int tag,
                     PendingWork& pending) {
  Tensor state = Tensor::empty(shape, dtype, device);
  g.on(device).recv(state, peer, tag)->wait();
  autograd::record_source("receive_state", {state}, [&g, peer, tag, &pending](const std::vector<Tensor>& grads) {
    pending.add(g.on(grads[0].device()).send(contiguous(grads[0]), peer, tag));
    return std::vector<Tensor>{};
  });
  return state;
}

void send_values(const Tensor& state, const ProcessGroup& g, int peer, int tag, PendingWork& pending) {
  checked_dim(state, 0, "send_state");
  pending.add(g.on(state.device()).send(contiguous(state.detach()), peer, tag));
}

Tensor receive_gradient(const Tensor& carrier, const Tensor& state, const ProcessGroup& g, int peer, int tag) {
  checked_dim(state, 0, "send_state");
  const Tensor y = carrier.detach();  // a new handle on the same data: the node's output
  const Shape shape = state.shape();
  const DType dtype = state.dtype();
  const Device device = state.device();
  autograd::record("send_state", {carrier, state}, {y},
                   [&g, peer, tag, shape, dtype, device](const std::vector<Tensor>& grads) {
                     Tensor dstate = Tensor::empty(shape, dtype, device);
                     g.on(device).recv(dstate, peer, tag)->wait();
                     return std::vector<Tensor>{grads[0], dstate};
                   });
  return y;
}

Tensor send_state(const Tensor& carrier, const Tensor& state, const ProcessGroup& g, int peer, int tag,
                  PendingWork& pending) {
  send_values(state, g, peer, tag, pending);
  return receive_gradient(carrier, state, g, peer, tag);
}

}  // namespace mgl::dist

#pragma once
// backward() and grad(): reverse-mode sweeps over the graph recorded by ops.
#include <vector>

#include "core/tensor.h"

namespace mgl::autograd {

// Computes gradients of `roots` (seeded with `grads`, or 1 for one-element roots) with respect to
// every leaf that requires grad, accumulating into their .grad. The sweep is iterative: count each
// node's incoming edges from the roots, then run nodes whose count has dropped to zero, so graphs
// of any depth run without recursion. Saved tensors are freed as each node finishes unless
// retain_graph is true.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {}, bool retain_graph = false);

// The gradients of `roots` (seeded as in backward) with respect to `inputs`, leaves that require
// grad, returned in each leaf's dtype (undefined for an input no gradient reached) instead of
// accumulated: no leaf's .grad changes, and no hook of a leaf runs (neither register_hook's nor
// post-accumulate ones).
// The graph is freed as it is swept. Like backward, it may be called from inside a backward
// closure: activation recomputation (recompute.h) sweeps the graph it re-recorded this way and
// hands the gradients to the outer sweep, which accumulates them exactly once.
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& inputs);

}  // namespace mgl::autograd

namespace mgl {
inline void backward(const Tensor& root, const Tensor& grad = {}, bool retain_graph = false) {
  autograd::backward({root}, grad.defined() ? std::vector<Tensor>{grad} : std::vector<Tensor>{}, retain_graph);
}
}  // namespace mgl

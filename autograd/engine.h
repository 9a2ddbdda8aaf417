#pragma once
// backward(): reverse-mode sweep over the graph recorded by ops.
#include <vector>

#include "core/tensor.h"

namespace mgl::autograd {

// Computes gradients of `roots` (seeded with `grads`, or 1 for one-element roots) with respect to
// every leaf that requires grad, accumulating into their .grad. The sweep is iterative: count each
// node's incoming edges from the roots, then run nodes whose count has dropped to zero, so graphs
// of any depth run without recursion. Saved tensors are freed as each node finishes unless
// retain_graph is true.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {}, bool retain_graph = false);

}  // namespace mgl::autograd

namespace mgl {
inline void backward(const Tensor& root, const Tensor& grad = {}, bool retain_graph = false) {
  autograd::backward({root}, grad.defined() ? std::vector<Tensor>{grad} : std::vector<Tensor>{}, retain_graph);
}
}  // namespace mgl

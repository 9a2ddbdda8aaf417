#include "autograd/engine.h"

#include <deque>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/node.h"

namespace mgl::autograd {

namespace {

// Adds `grad` into a node's running gradient sum `current` (undefined before the first one).
// When `current` is the only reference to a dense buffer of its own (the usual case: the fresh result of
// one backward formula, held by nothing but this slot), the sum goes into it in place: one pass over
// memory and no allocation. Otherwise the buffer may be seen elsewhere (the same tensor delivered to two
// slots, as the backward of x + x does; a view sharing storage with another gradient; a broadcast view
// whose elements alias) and the sum is a new tensor, leaving both operands untouched. The result is the
// same either way: current + grad, rounded to current's dtype.
// A leaf's gradients are summed in the leaf's dtype (`leaf`, null for other nodes): those of a parameter
// read through its compute copy arrive in the compute dtype (nn/compute_copy.h), and two bf16 gradients
// of an f32 parameter are summed in f32, as the two f32 gradients of casts at use were, to the same bits
// (each bf16 widens to f32 exactly). A single gradient reaches AccumulateGrad as it came.
void accumulate(Tensor& current, const Tensor& grad, const AccumulateGrad* leaf) {
  if (!current.defined()) {
    current = grad;
    return;
  }
  MGL_CHECK(current.shape() == grad.shape(), "backward: gradients ", current.describe(), " and ", grad.describe(),
            " for the same tensor differ in shape");
  const DType dtype = leaf ? leaf->dtype() : current.dtype();
  const bool sole_owner = current.impl_ptr().use_count() == 1 && current.storage().use_count() == 1;
  if (!sole_owner || !current.is_contiguous() || current.dtype() != dtype) {
    Tensor sum = Tensor::empty(current.shape(), dtype, current.device());
    copy_(sum, current);
    current = sum;
  }
  add_(current, grad);
}

// `grad` converted to `dtype` (itself when it has that dtype, or is undefined).
Tensor in_dtype(const Tensor& grad, DType dtype) {
  if (!grad.defined() || grad.dtype() == dtype) return grad;
  Tensor converted = Tensor::empty(grad.shape(), dtype, grad.device());
  copy_(converted, grad);
  return converted;
}

struct NodeState {
  int dependencies = 0;
  std::vector<Tensor> grads;  // incoming gradient per output of the node, summed
};

// The reverse sweep shared by backward() and grad(). Without `captured` it accumulates into every
// leaf reached (running AccumulateGrad nodes). With it, it runs no AccumulateGrad node at all and
// returns, for each leaf of *captured, the sum of the gradients that reached it (undefined if none).
std::vector<Tensor> sweep(const char* caller, const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                          bool retain_graph, const std::vector<Tensor>* captured) {
  MGL_CHECK(grads.empty() || grads.size() == roots.size(), caller, ": ", roots.size(), " roots but ", grads.size(),
            " gradients");
  NoGradGuard no_grad;  // backward formulas run as plain ops; no graph of the graph

  std::unordered_map<Node*, NodeState> state;
  std::vector<std::shared_ptr<Node>> keep_alive;

  // 1. Seed: one edge (and one gradient) per root.
  std::vector<std::pair<Edge, Tensor>> seeds;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    MGL_CHECK(root.requires_grad(), caller, ": root ", root.describe(),
              " does not require grad (no input of the computation requires grad, or it ran under NoGradGuard)");
    Tensor seed;
    if (!grads.empty() && grads[i].defined()) {
      seed = grads[i];
      MGL_CHECK(seed.shape() == root.shape() && seed.device() == root.device(), caller, ": gradient ",
                seed.describe(), " does not match root ", root.describe());
    } else {
      MGL_CHECK(root.numel() == 1, caller, ": an implicit gradient (1) is only defined for one-element roots, got ",
                root.describe(), "; pass the gradient explicitly");
      seed = Tensor::ones(root.shape(), root.dtype(), root.device());
    }
    seeds.emplace_back(gradient_edge(root), seed);
  }

  // 2. Count dependencies: how many edges lead into each node reachable from the roots.
  std::vector<Node*> stack;
  for (auto& [edge, seed] : seeds) {
    if (state.emplace(edge.node.get(), NodeState{}).second) {
      stack.push_back(edge.node.get());
      keep_alive.push_back(edge.node);
    }
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& next : node->next_edges) {
      if (!next.node) continue;
      auto [it, inserted] = state.emplace(next.node.get(), NodeState{});
      ++it->second.dependencies;
      if (inserted) {
        stack.push_back(next.node.get());
        keep_alive.push_back(next.node);
      }
    }
  }

  auto deliver = [&](Node* node, int slot, const Tensor& grad) {
    NodeState& s = state[node];
    if (s.grads.empty()) s.grads.resize(node->num_outputs);
    accumulate(s.grads.at(slot), grad, dynamic_cast<const AccumulateGrad*>(node));
  };
  for (auto& [edge, seed] : seeds) deliver(edge.node.get(), edge.output_nr, seed);

  // 3. Run nodes whose dependencies are all satisfied.
  std::deque<Node*> ready;
  for (auto& [edge, seed] : seeds)
    if (state[edge.node.get()].dependencies == 0) ready.push_back(edge.node.get());
  // Where each captured leaf's gradient goes in the result (a leaf may be listed more than once).
  std::unordered_map<Node*, std::vector<size_t>> capture_slots;
  std::vector<Tensor> result;
  if (captured) {
    result.resize(captured->size());
    for (size_t i = 0; i < captured->size(); ++i) {
      const Tensor& leaf = (*captured)[i];
      MGL_CHECK(leaf.defined() && leaf.is_leaf() && leaf.requires_grad(), caller, ": input ", i, " (",
                leaf.defined() ? leaf.describe() : "undefined", ") is not a leaf that requires grad");
      capture_slots[gradient_edge(leaf).node.get()].push_back(i);
    }
  }

  std::unordered_map<Node*, bool> done;
  while (!ready.empty()) {
    Node* node = ready.front();
    ready.pop_front();
    if (done[node]) continue;  // two roots may share a node
    done[node] = true;
    NodeState& s = state[node];
    std::vector<Tensor> incoming = std::move(s.grads);
    incoming.resize(node->num_outputs);
    const auto* leaf = dynamic_cast<const AccumulateGrad*>(node);
    if (captured && leaf) {  // a leaf: hand its gradient back, in the leaf's dtype, and touch no .grad
      auto it = capture_slots.find(node);
      if (it != capture_slots.end())
        for (size_t i : it->second) result[i] = in_dtype(incoming[0], leaf->dtype());
      continue;
    }
    for (auto& [slot, hook] : node->grad_hooks)
      if (incoming[slot].defined()) incoming[slot] = hook(incoming[slot]);
    bool any_gradient = false;
    for (const Tensor& g : incoming) any_gradient = any_gradient || g.defined();
    // A node that no gradient reached passes none on (but still releases its inputs' counts).
    std::vector<Tensor> outgoing =
        any_gradient ? node->apply(std::move(incoming)) : std::vector<Tensor>(node->next_edges.size());
    if (!retain_graph) node->release_saved();
    for (size_t i = 0; i < node->next_edges.size() && i < outgoing.size(); ++i) {
      const Edge& next = node->next_edges[i];
      if (!next.node) continue;
      if (outgoing[i].defined()) deliver(next.node.get(), next.output_nr, outgoing[i]);
      if (--state[next.node.get()].dependencies == 0) ready.push_back(next.node.get());
    }
  }
  return result;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  sweep("backward", roots, grads, retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& inputs) {
  return sweep("grad", roots, grads, false, &inputs);
}

}  // namespace mgl::autograd

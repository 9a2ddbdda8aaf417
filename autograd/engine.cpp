#include "autograd/engine.h"

#include <deque>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/node.h"

namespace mgl::autograd {

namespace {

// Sum of two gradients without touching either (both may be referenced elsewhere in the graph).
Tensor sum_gradients(const Tensor& a, const Tensor& b) {
  MGL_CHECK(a.shape() == b.shape(), "backward: gradients ", a.describe(), " and ", b.describe(),
            " for the same tensor differ in shape");
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  copy_(out, a);
  add_(out, b);
  return out;
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
    Tensor& current = s.grads.at(slot);
    current = current.defined() ? sum_gradients(current, grad) : grad;
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
    if (captured && dynamic_cast<AccumulateGrad*>(node)) {  // a leaf: hand its gradient back, touch no .grad
      auto it = capture_slots.find(node);
      if (it != capture_slots.end())
        for (size_t i : it->second) result[i] = incoming[0];
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

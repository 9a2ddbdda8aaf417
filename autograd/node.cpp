#include "autograd/node.h"

#include <atomic>

#include "autograd/grad_mode.h"

namespace mgl::autograd {

namespace {
std::atomic<uint64_t> sequence_counter{0};
}
Node::Node() : sequence_nr(sequence_counter.fetch_add(1)) {}
uint64_t next_sequence_nr() { return sequence_counter.load(); }

// Each node owns the nodes before it through next_edges, so letting destructors run naturally
// recurses once per node of a chain (and a 100k-op chain overflows the stack). Instead a dying node
// adopts the predecessors that it alone keeps alive, and empties their edges before they die: each
// destructor then returns at once, and the loop below walks the chain.
Node::~Node() {
  std::vector<std::shared_ptr<Node>> orphans;
  auto adopt = [&orphans](std::vector<Edge>& edges) {
    for (Edge& edge : edges)
      if (edge.node && edge.node.use_count() == 1) orphans.push_back(std::move(edge.node));
    edges.clear();
  };
  adopt(next_edges);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    node->release_saved();  // saved tensors are released first: they may hold handles on the graph too
    adopt(node->next_edges);
  }  // `node` dies here with no edges left
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grad_outputs) {
  MGL_CHECK(backward_ != nullptr, name_,
            ": backward called a second time, but its saved tensors were freed by the first; "
            "pass retain_graph = true to the first backward");
  std::vector<Tensor> grads = backward_(grad_outputs);
  MGL_CHECK(grads.size() == next_edges.size(), name_, ": backward returned ", grads.size(), " gradients for ",
            next_edges.size(), " inputs");
  return grads;
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grad_outputs) {
  const Tensor leaf(leaf_.lock());
  if (!leaf.defined()) return {};
  const Tensor& incoming = grad_outputs.at(0);
  if (incoming.defined()) {
    MGL_CHECK(incoming.shape() == leaf.shape(), "AccumulateGrad: gradient ", incoming.describe(),
              " does not match its leaf ", leaf.describe());
    Tensor grad = leaf.grad();
    if (!grad.defined()) {
      // Own storage: the incoming tensor may be shared with other gradients of the graph.
      grad = Tensor::empty(leaf.shape(), leaf.dtype(), leaf.device());
      copy_(grad, incoming);
      leaf.set_grad(grad);
    } else {
      add_(grad, incoming);
    }
  }
  for (const auto& hook : leaf.impl()->post_accumulate_grad_hooks) hook(leaf);
  return {};
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  if (!impl->grad_accumulator) impl->grad_accumulator = std::make_shared<AccumulateGrad>(leaf);
  return impl->grad_accumulator;
}
}  // namespace

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.impl()->output_nr};
  return {grad_accumulator(t), 0};
}

namespace {
void attach_node(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                 BackwardFunction backward) {
  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  node->num_outputs = static_cast<int>(outputs.size());
  node->next_edges.reserve(inputs.size());
  for (const Tensor& input : inputs) node->next_edges.push_back(gradient_edge(input));
  for (size_t k = 0; k < outputs.size(); ++k) {
    TensorImpl* impl = outputs[k].impl();
    if (!impl || !is_floating(impl->dtype)) continue;  // integer outputs (indices) carry no gradient
    impl->grad_fn = node;
    impl->output_nr = static_cast<int>(k);
    impl->requires_grad = true;
  }
}
}  // namespace

bool record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFunction backward) {
  if (!needs_grad(inputs)) return false;
  attach_node(name, inputs, outputs, std::move(backward));
  return true;
}

bool record_source(const std::string& name, const std::vector<Tensor>& outputs, BackwardFunction backward) {
  if (!grad_enabled()) return false;
  attach_node(name, {}, outputs, std::move(backward));
  return true;
}

void register_hook(const Tensor& t, GradHook hook) {
  MGL_CHECK(t.requires_grad(), "register_hook: ", t.describe(), " does not require grad");
  Edge edge = gradient_edge(t);
  edge.node->grad_hooks.emplace_back(edge.output_nr, std::move(hook));
}

}  // namespace mgl::autograd

#include "autograd/recompute.h"

#include <unordered_set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/random.h"

namespace mgl::autograd {

namespace {

// For its scope, the default generator is back at the state it had when the forward ran fn; on
// exit it gets the state it had before the replay, so the replay draws exactly the forward's random
// numbers and leaves the draws around it untouched.
class GeneratorReplay {
 public:
  explicit GeneratorReplay(const Generator& at_forward) : current_(default_generator()) {
    default_generator() = at_forward;
  }
  ~GeneratorReplay() { default_generator() = current_; }
  GeneratorReplay(const GeneratorReplay&) = delete;
  GeneratorReplay& operator=(const GeneratorReplay&) = delete;

 private:
  Generator current_;
};

// Walks the recomputed graph from `roots` and throws unless every path ends in `allowed` (the
// AccumulateGrad nodes of the input copies and of the parameters) or in a tensor that needs no
// gradient. A path ending elsewhere would be a tensor requiring grad that fn uses without it being an
// input or a parameter: a leaf, whose gradient grad() would drop, or a tensor of the graph recorded
// before the replay (its node older than `first_node`), through which grad() would run a second,
// premature backward.
void check_closed(const std::string& name, const std::vector<Tensor>& roots, const std::unordered_set<Node*>& allowed,
                  uint64_t first_node) {
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  auto visit = [&](const Edge& edge) {
    if (edge.node && !allowed.count(edge.node.get()) && seen.insert(edge.node.get()).second)
      stack.push_back(edge.node.get());
  };
  for (const Tensor& root : roots) visit(gradient_edge(root));
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    MGL_CHECK(!dynamic_cast<AccumulateGrad*>(node), "recompute ", name,
              ": the function uses a leaf tensor that requires grad but is neither one of its inputs nor one of "
              "the listed parameters; list it among the parameters (its gradient would be lost)");
    MGL_CHECK(node->sequence_nr >= first_node, "recompute ", name,
              ": the function uses a tensor that requires grad and was computed outside it (by ", node->name(),
              "); pass that tensor as an input");
    for (const Edge& next : node->next_edges) visit(next);
  }
}

// The recompute node's backward and all it keeps: fn, its inputs (detached), the parameters, the
// generator's state when the forward ran, and which outputs the forward gave (to check the replay).
struct Replay {
  std::string name;
  RecomputedFunction fn;
  std::vector<Tensor> inputs;
  std::vector<bool> input_requires_grad;
  std::vector<Tensor> parameters;
  Generator at_forward;
  std::vector<bool> output_defined;
  std::vector<Shape> output_shapes;

  std::vector<Tensor> operator()(const std::vector<Tensor>& grad_outputs) const {
    // 1. Replay fn with grad on, on fresh leaves holding the inputs' values.
    std::vector<Tensor> replay_inputs;
    std::vector<Tensor> leaves;  // what grad() differentiates with respect to
    for (size_t i = 0; i < inputs.size(); ++i) {
      Tensor copy = inputs[i].defined() ? inputs[i].detach() : Tensor();
      if (input_requires_grad[i]) leaves.push_back(copy.set_requires_grad(true));
      replay_inputs.push_back(copy);
    }
    for (const Tensor& p : parameters)
      if (p.defined() && p.requires_grad()) leaves.push_back(p);
    const uint64_t first_node = next_sequence_nr();
    std::vector<Tensor> outputs;
    {
      EnableGradGuard grad_on;
      GeneratorReplay replay(at_forward);
      outputs = fn(replay_inputs);
    }

    // 2. Sweep the recomputed graph from the outputs that received a gradient.
    MGL_CHECK(outputs.size() == output_defined.size(), "recompute ", name, ": the recomputation returned ",
              outputs.size(), " outputs, the forward ", output_defined.size(), "; the function must be deterministic");
    std::vector<Tensor> roots, seeds;
    for (size_t k = 0; k < outputs.size(); ++k) {
      const bool defined = output_defined[k];
      MGL_CHECK(outputs[k].defined() == defined && (!defined || outputs[k].shape() == output_shapes[k]), "recompute ",
                name, ": output ", k, " was ", defined ? shape_str(output_shapes[k]) : std::string("undefined"),
                " in the forward and is ", outputs[k].defined() ? outputs[k].describe() : std::string("undefined"),
                " recomputed; the function must be deterministic");
      if (grad_outputs[k].defined() && outputs[k].defined() && outputs[k].requires_grad()) {
        roots.push_back(outputs[k]);
        seeds.push_back(grad_outputs[k]);
      }
    }
    std::unordered_set<Node*> allowed;
    for (const Tensor& leaf : leaves) allowed.insert(gradient_edge(leaf).node.get());
    check_closed(name, roots, allowed, first_node);
    const std::vector<Tensor> leaf_grads =
        roots.empty() ? std::vector<Tensor>(leaves.size()) : grad(roots, seeds, leaves);

    // 3. One gradient per input of the node, in its order: fn's inputs, then the parameters.
    std::vector<Tensor> result;
    size_t next = 0;
    for (bool wanted : input_requires_grad) result.push_back(wanted ? leaf_grads[next++] : Tensor());
    for (const Tensor& p : parameters)
      result.push_back(p.defined() && p.requires_grad() ? leaf_grads[next++] : Tensor());
    return result;
  }
};

}  // namespace

std::vector<Tensor> recompute(const std::string& name, const RecomputedFunction& fn, const std::vector<Tensor>& inputs,
                              const std::vector<Tensor>& parameters) {
  std::vector<Tensor> sources = inputs;  // the node's inputs: fn's inputs, then the parameters
  sources.insert(sources.end(), parameters.begin(), parameters.end());
  if (!needs_grad(sources)) return fn(inputs);

  Replay replay{name, fn, {}, {}, parameters, default_generator(), {}, {}};
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = fn(inputs);
  }
  for (Tensor& out : outputs) {
    // Own handles: fn may return one of its inputs (or a parameter) itself, whose grad_fn record()
    // must not overwrite.
    if (out.defined()) out = out.detach();
    replay.output_defined.push_back(out.defined());
    replay.output_shapes.push_back(out.defined() ? out.shape() : Shape{});
  }
  for (const Tensor& input : inputs) {
    replay.inputs.push_back(input.defined() ? input.detach() : Tensor());
    replay.input_requires_grad.push_back(input.defined() && input.requires_grad());
  }
  record("recompute " + name, sources, outputs, std::move(replay));
  return outputs;
}

}  // namespace mgl::autograd

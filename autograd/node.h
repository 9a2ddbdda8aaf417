#pragma once
// The graph. Every differentiable op call that touches a tensor requiring grad adds one Node: it
// remembers what backward needs (saved tensors, captured in a closure) and where each input's
// gradient goes next (next_edges). Leaves that require grad end in an AccumulateGrad node, which
// adds into .grad and then fires the leaf's post-accumulate hooks.
//
// Granularity is the op: a fused kernel (attention, CEMA, cross-entropy) is one node with a
// hand-derived backward, like a PyTorch custom Function.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mgl::autograd {

class Node;

// Where a gradient flows: to output `output_nr` of `node`, i.e. it arrives as
// node->apply()'s grad_outputs[output_nr] (the same number as TensorImpl::output_nr of the tensor
// this edge leads back to).
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
};

// A hook sees the gradient of one tensor when it is final and may return a replacement
// (or the same tensor).
using GradHook = std::function<Tensor(const Tensor&)>;

class Node {
 public:
  Node();
  // Tears down the part of the graph only this node keeps alive iteratively, not by recursion, so
  // dropping the last handle on a graph of any depth cannot overflow the stack.
  virtual ~Node();
  virtual std::string name() const = 0;
  // grad_outputs[k] is the gradient with respect to output k (undefined if none reached it).
  // Returns one gradient per next_edge, undefined where an input gets none.
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) = 0;
  // Frees what the node saved for backward (called after it ran, unless retain_graph).
  virtual void release_saved() {}

  int num_outputs = 1;
  // Creation order: a node made later has a larger number (activation recomputation tells the
  // nodes it recorded itself from older ones by it).
  const uint64_t sequence_nr;
  std::vector<Edge> next_edges;
  std::vector<std::pair<int, GradHook>> grad_hooks;  // (output index, hook)
};

// A node whose backward is a closure. The closure captures the saved tensors; release_saved()
// destroys it, so saved memory is returned as soon as the node's backward has run.
using BackwardFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFunction backward) : name_(std::move(name)), backward_(std::move(backward)) {}
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  void release_saved() override { backward_ = nullptr; }

 private:
  std::string name_;
  BackwardFunction backward_;
};

// Adds incoming gradients into a leaf's .grad (allocating it on first use), then calls the
// leaf's post-accumulate hooks: the moment a parameter's gradient is final for this pass.
// The incoming gradient may be of another floating dtype than the leaf: a parameter read through its
// compute copy (nn/compute_copy.h) gets its gradient in the compute dtype, converted as it is added (one
// pass over it, instead of a cast and then the sum). The engine sums what reaches a leaf in the leaf's dtype.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const Tensor& leaf) : leaf_(leaf.impl_ptr()), dtype_(leaf.dtype()) {}
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  DType dtype() const { return dtype_; }  // the leaf's

 private:
  std::weak_ptr<TensorImpl> leaf_;  // the leaf owns this node; a dead leaf needs no gradient
  DType dtype_;
};

// The sequence_nr the next node will get.
uint64_t next_sequence_nr();

// True if grad mode is on and any input requires grad: only then does an op record a node.
bool needs_grad(const std::vector<Tensor>& inputs);

// Records one op: creates a FunctionNode wired to the inputs and makes it the grad_fn of the
// outputs (which then require grad). Does nothing (and returns false) unless needs_grad(inputs).
// Capture outputs in `backward` only through detach(), never the outputs themselves (a tensor
// holding its own grad_fn would be a reference cycle).
bool record(const std::string& name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFunction backward);

// Records an op without inputs whose backward matters for what it does rather than what it returns:
// chunk parallelism's receive (dist/mappings.h) sends the gradient of what it received back to the
// rank it came from. When grad mode is on, the outputs require grad and get the node as grad_fn.
bool record_source(const std::string& name, const std::vector<Tensor>& outputs, BackwardFunction backward);

// The edge a gradient for `t` must take (its grad_fn output, its AccumulateGrad, or none).
Edge gradient_edge(const Tensor& t);

// Hooks on any tensor requiring grad: `hook` sees the tensor's gradient when it is final
// (for a leaf, before accumulation into .grad: in the compute dtype when it came through the leaf's
// compute copy alone, see AccumulateGrad) and may return a replacement.
void register_hook(const Tensor& t, GradHook hook);

}  // namespace mgl::autograd

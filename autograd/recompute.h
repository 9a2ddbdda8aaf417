#pragma once
// Activation recomputation (gradient checkpointing; PyTorch's torch.utils.checkpoint, reentrant
// form): trade compute for memory by not keeping what a piece of the forward saves for backward.
//
// recompute(name, fn, inputs, parameters) runs fn(inputs) under no-grad, so none of fn's
// intermediate tensors outlive the call, and records ONE node in place of fn's graph. That node
// keeps only the inputs. Its backward
//   1. runs fn again, with grad on, on detached copies of the inputs (leaves, requiring grad where
//      the inputs did), replaying the random numbers of the forward: the default generator is set
//      to its state at forward time for the replay and then put back as it was, so dropout inside
//      fn draws the same masks and the draws around it are unaffected;
//   2. sweeps the recomputed graph with autograd::grad (engine.h) from fn's outputs, seeded with
//      the node's incoming gradients, down to the input copies and the parameters;
//   3. returns those gradients as the node's own: the outer backward delivers them to the inputs'
//      graph and to the parameters' AccumulateGrad nodes like any other gradient.
// So a parameter's .grad is accumulated once per backward, by the outer sweep, and its hooks
// (register_hook, post-accumulate hooks: the overlapped all-reduce) fire once, as without
// recomputation. When the inputs and parameters get their gradients only through fn (as a block's
// do), the gradients are bitwise those of the plain forward: the recomputed graph is swept in the
// order the plain backward sweeps that part of the graph, so every sum is formed in the same order.
//
// The contract on fn:
//  * it is deterministic given its inputs, the parameters and the default generator: other state it
//    reads (a module's training flag, a compute dtype) must not change between the forward and the
//    backward, and it draws random numbers only from the default generator (a private Generator
//    would give the replay new ones);
//  * every tensor requiring grad that it uses is one of `inputs` or one of `parameters` (leaves,
//    typically module.parameters()); the backward checks this and throws otherwise rather than
//    lose a gradient;
//  * whatever fn captures (a module) must outlive the backward.
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mgl::autograd {

using RecomputedFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

// fn(inputs), recorded as one node named `name` whose backward recomputes fn (see above). Without
// grad mode, or when neither an input nor a parameter requires grad, it is just fn(inputs).
std::vector<Tensor> recompute(const std::string& name, const RecomputedFunction& fn, const std::vector<Tensor>& inputs,
                              const std::vector<Tensor>& parameters);

}  // namespace mgl::autograd

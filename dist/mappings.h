#pragma once
// Communication as autograd ops, in matched pairs (Megatron-LM's tensor_parallel/mappings.py is the
// model): each op's backward is the communication its forward's transpose needs, so a parallel layer
// written with them gets its gradients right by construction.
//
//   op                   forward                          backward
//   copy_to_group        identity                         all-reduce (sum) of the gradient
//   reduce_from_group    all-reduce (sum)                 identity
//   all_gather           all-gather along dim             reduce-scatter along dim
//   reduce_scatter       reduce-scatter along dim         all-gather along dim
//   scatter_to_group     keep this rank's piece of dim    all-gather along dim
//   gather_from_group    all-gather along dim             keep this rank's piece of dim
//   receive_state        receive from peer                send the gradient back to peer
//   send_state           send to peer (carrier passes)    receive the gradient from peer
//
// Why the pairs: y = copy_to_group(x) feeds every rank's piece of a sharded computation, so
// dL/dx = sum over ranks of their dL/dy (all-reduce); y = reduce_from_group(x) is a sum whose
// gradient reaches every summand unchanged. all_gather's output is consumed by every rank, so each
// rank's piece of x receives the sum of every rank's gradient for it (reduce-scatter); scatter and
// gather are the no-communication halves when the consumer is replicated (its gradient is already the
// same on every rank).
//
// Pieces along `dim` are contiguous and equal: rank r holds [r * n, (r + 1) * n) of the full size
// n * group size. Inputs may be any floating dtype the group's backend carries, on the group's device.
#include <cstdint>

#include "core/tensor.h"
#include "dist/parallel_state.h"

namespace mgl::dist {

Tensor copy_to_group(const Tensor& x, const ProcessGroup& group);
Tensor reduce_from_group(const Tensor& x, const ProcessGroup& group);
Tensor all_gather(const Tensor& x, const ProcessGroup& group, int64_t dim);
Tensor reduce_scatter(const Tensor& x, const ProcessGroup& group, int64_t dim);
Tensor scatter_to_group(const Tensor& x, const ProcessGroup& group, int64_t dim);
Tensor gather_from_group(const Tensor& x, const ProcessGroup& group, int64_t dim);

// Chunk parallelism's point-to-point pair (docs/parallelism.md): the state one rank hands to the
// next, and its gradient coming back.
//
// receive_state: a tensor of `shape`/`dtype` on `device` received from `peer` of `group`. With grad
// mode on it requires grad, and its backward sends the gradient it receives back to `peer` (the send
// is kept in `pending` until the step's end).
Tensor receive_state(const Shape& shape, DType dtype, const Device& device, const ProcessGroup& group, int peer,
                     int tag, PendingWork& pending);
// send_state: sends `state` to `peer` (kept in `pending`) and returns `carrier` unchanged. With grad
// mode on, the returned tensor's backward first receives the gradient of `state` from `peer` (the
// peer's receive_state sends it) and passes it to `state`, and dcarrier straight on. `carrier` is the
// tensor the rest of this rank's computation consumes after the state was formed, so the wait for the
// peer's gradient comes exactly where backward needs it.
Tensor send_state(const Tensor& carrier, const Tensor& state, const ProcessGroup& group, int peer, int tag,
                  PendingWork& pending);
// send_state's two halves, for a state that is formed where no graph is recorded (activation
// recomputation, nn/chunk_parallel.h): send_values sends `state`'s values (no autograd; kept in
// `pending`); receive_gradient returns `carrier` unchanged and, with grad mode on, its backward first
// receives the gradient of `state` from `peer` and passes it to `state`.
void send_values(const Tensor& state, const ProcessGroup& group, int peer, int tag, PendingWork& pending);
Tensor receive_gradient(const Tensor& carrier, const Tensor& state, const ProcessGroup& group, int peer, int tag);

}  // namespace mgl::dist

#pragma once
// Multi-tensor launches: one kernel over a whole list of contiguous tensors (a model's parameters, their
// gradients and moments) instead of one launch per tensor, as PyTorch's and apex's multi_tensor_apply.
//
// Each tensor of the list is cut into chunks of kMultiTensorChunk elements (its last chunk shorter); the
// chunks of all tensors, in list order, form one grid: block b works on chunk b. A launch therefore
// takes lists of any length and any sizes, and every block has about the same work. The host describes
// the list in two device arrays (nn/multi_tensor.h builds and uploads them without a wait): one slot per
// tensor, whose fields depend on the kernel (cuda/adamw.h, cuda/grad_norm.h), and one MultiTensorChunk
// per chunk.
#include <cstdint>

namespace mgl::cuda {

// 64K elements: a block of 256 threads does 256 each, long enough to hide the launch of the block, short
// enough that a 130M-parameter model gives ~2000 blocks (every SM busy).
constexpr int64_t kMultiTensorChunk = int64_t{1} << 16;

// Chunk b of the grid: elements [piece * kMultiTensorChunk, min(count, (piece + 1) * kMultiTensorChunk))
// of slot `tensor`.
struct MultiTensorChunk {
  int32_t tensor = 0;
  int32_t piece = 0;
};

// How many chunks a tensor of `count` elements has.
constexpr int64_t multi_tensor_chunks(int64_t count) { return (count + kMultiTensorChunk - 1) / kMultiTensorChunk; }

}  // namespace mgl::cuda

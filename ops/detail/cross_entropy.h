#pragma once
// Shared by cross_entropy and linear_cross_entropy (defined in ops/cross_entropy.cpp): the checked
// targets, and the two passes over rows of logits, each on the CPU (f64 math, the oracle) or the CUDA
// kernels of cuda/cross_entropy.h, by the logits' device. No graph: the ops record their own nodes.
#include <cstdint>

#include "core/tensor.h"

namespace mgl::detail {

// Targets [rows] read on the host and checked: an id outside [0, classes) that is not ignore_index
// throws, naming `op`, the id and its row. `ids` are the targets as the passes below read them on
// `device`: the checked i64 ids on the CPU; on CUDA, CPU targets uploaded without a wait
// (core/host_upload.h), CUDA targets as they are (after the copy to the host that checked them).
struct CheckedTargets {
  Tensor ids;
  int64_t counted = 0;  // rows whose target is not ignore_index
};
CheckedTargets check_targets(const char* op, const Tensor& targets, int64_t classes, int64_t ignore_index,
                             const Device& device);

// row_loss[r] = lse_r - logits[r, t_r] and row_lse[r] = lse_r (both 0 on ignored rows), in the loss type
// (f32 for f32 and bf16 logits, f64 for f64). logits [rows, cols] contiguous, ids from check_targets.
void cross_entropy_rows(const Tensor& logits, const Tensor& ids, int64_t ignore_index, const Tensor& row_loss,
                        const Tensor& row_lse);

// dlogits[r, c] = (exp(logits[r, c] - lse_r) - [c == t_r]) * dloss * scale, 0 on ignored rows; dloss is
// one value of the loss type on the logits' device (read there, so CUDA does not wait). dlogits has the
// logits' dtype, or bf16 for f32 logits, and may be the logits themselves (each element is read before
// it is written).
void cross_entropy_row_grads(const Tensor& logits, const Tensor& ids, int64_t ignore_index, const Tensor& row_lse,
                             const Tensor& dloss, double scale, const Tensor& dlogits);

}  // namespace mgl::detail

#pragma once
// Cross-entropy over a vocabulary split across the ranks of a tensor-parallel group (Megatron-LM's
// vocab_parallel_cross_entropy is the model): each rank holds the logits of its own slice of the
// vocabulary, and no rank ever forms the full [N, V] logits. The math is in
// dist/vocab_parallel_cross_entropy.cpp.
#include <cstdint>

#include "core/tensor.h"
#include "dist/parallel_state.h"

namespace mgl::dist {

// logits [N, V/TP]: this rank's slice [r * V/TP, (r + 1) * V/TP) of the full logits over `group`
// (r = group.rank(), TP = group.size()); f64, f32 or bf16, on the CPU or on this rank's GPU.
// targets [N] (i32 or i64, on the logits' device or the CPU, which costs no wait): full-vocabulary ids,
// the same on every rank of the group; rows whose target is ignore_index are skipped.
// Returns, on every rank, cross_entropy(full logits, targets, ignore_index) (ops/ops.h): the mean over
// counted rows, 0 with a zero gradient when none count; a 0-dim f32 tensor (f64 for f64 logits).
// Backward gives each rank the gradient of its own slice. Collective over `group` (two all-reduces).
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, const ProcessGroup& group,
                                    int64_t ignore_index = -100);

}  // namespace mgl::dist

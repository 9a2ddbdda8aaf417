#pragma once
// Streaming runs for the streaming tests (CPU and CUDA): the two TimestepNorm modes' options, and a
// whole sequence fed as prefills and decodes whose logits are gathered, checking the calls on the way.
#include <vector>

#include "nn/streaming.h"
#include "ops/ops.h"
#include "support/testing.h"

namespace mgl::testing {

inline nn::StreamingOptions exact() {
  nn::StreamingOptions options;
  options.timestep_norm_mode = "exact";
  return options;
}

inline nn::StreamingOptions windowed(int64_t chunks, int64_t after_chunks) {
  return {.timestep_norm_mode = "windowed", .norm_window_chunks = chunks, .norm_window_after_chunks = after_chunks};
}

// The logits of the last position of [B, n, vocab]: [B, vocab].
inline Tensor last_position(const Tensor& logits) {
  return reshape(contiguous(slice(logits, 1, logits.size(1) - 1, logits.size(1))), {logits.size(0), logits.size(2)});
}

// Streams ids [B, L]: prefills of the pieces ending at `prefill_ends` (observing every call's logits),
// then one decode per remaining token. Returns the logits of every position, [B, L, vocab].
inline Tensor stream(nn::StreamingSession& session, const Tensor& ids, const std::vector<int64_t>& prefill_ends) {
  std::vector<Tensor> parts;
  int64_t start = 0, next_first = 0;
  for (int64_t end : prefill_ends) {
    const Tensor last = session.prefill(slice(ids, 1, start, end), [&](int64_t first, const Tensor& logits) {
      CHECK(first == next_first);  // the calls cover the stream in order
      next_first += logits.size(1);
      parts.push_back(logits);
    });
    CHECK(session.position() == end);
    CHECK(relative_error(last, last_position(parts.back())) == 0.0);
    start = end;
  }
  for (int64_t t = start; t < ids.size(1); ++t) {
    const Tensor token = reshape(contiguous(slice(ids, 1, t, t + 1)), {ids.size(0)});
    parts.push_back(unsqueeze(session.decode(token), 1));
  }
  return concat(parts, 1);
}

}  // namespace mgl::testing

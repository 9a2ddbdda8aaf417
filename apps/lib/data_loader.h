#pragma once
// DataLoader: training batches from a token stream (a token shard), deterministic in
// (seed, step, rank, world size), so a run resumes exactly from its step counter and every
// data-parallel rank draws its own windows without talking to the others.
//
// Windows. With sequence length L, a window is L + 1 consecutive tokens: inputs = the first L,
// targets = the last L (the next token of each input). An epoch cuts the N-token stream into
// M = floor((N - 1) / L) windows starting at shift + k L (k = 0 .. M-1); consecutive windows share
// one token (the last target of one is the first input of the next), so every token is an input
// exactly once per epoch except the at most L - 1 slack tokens around the cut. The shift in
// [0, (N - 1) - M L] is drawn per epoch, so the cut points move between epochs.
//
// Order. Epoch e visits the windows in a random permutation (Fisher-Yates driven by the Philox stream
// keyed by the seed, with the epoch as the stream offset). A step takes the next G = B * world windows
// of that permutation: global slot j = r + world * i (i = 0 .. B-1) belongs to rank r, so in one step
// no two ranks (and no two rows) share a window. An epoch holds floor(M / G) steps; its last M mod G
// windows are skipped, a different set each epoch. The loader's only state is the step counter.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mgl::apps {

struct DataLoaderOptions {
  int64_t batch_size = 1;  // B: windows per rank per step
  int64_t seq_len = 1;     // L
  int64_t vocab_size = 0;  // every token must be < vocab_size
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
};

struct Batch {
  Tensor inputs;   // i64 [B, L] on the CPU
  Tensor targets;  // i64 [B, L]: inputs shifted by one token
};

class DataLoader {
 public:
  // `source` names the tokens in error messages (e.g. the shard's path). Throws mgl::Error for bad
  // options, for a stream with fewer than B * world windows, and for a token id >= vocab_size (naming
  // the id and its position).
  DataLoader(std::vector<uint32_t> tokens, const DataLoaderOptions& options, std::string source);
  // Reads a token shard (apps/lib/token_shards.h).
  static DataLoader from_shard(const std::string& path, const DataLoaderOptions& options);

  // The batch of step `step` for this rank (does not move the counter).
  Batch batch(int64_t step);
  // batch(step()), then step() + 1.
  Batch next();

  // The checkpointable position: the step the next call to next() returns.
  int64_t step() const { return step_; }
  void set_step(int64_t step);

  // The first-token positions in the stream of this rank's B windows at `step`, row order.
  std::vector<int64_t> window_starts(int64_t step);

  int64_t windows_per_epoch() const { return windows_per_epoch_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t token_count() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  // Fills order_ and shift_ for `epoch` (cached: consecutive steps reuse them).
  void prepare_epoch(int64_t epoch);

  std::vector<uint32_t> tokens_;
  DataLoaderOptions options_;
  std::string source_;
  int64_t windows_per_epoch_ = 0;  // M
  int64_t steps_per_epoch_ = 0;    // floor(M / (B * world))
  int64_t step_ = 0;

  int64_t cached_epoch_ = -1;
  int64_t shift_ = 0;
  std::vector<int64_t> order_;  // permutation of the M window indices
};

}  // namespace mgl::apps

#pragma once
// Scoring one long text over the ranks of a group, exactly (docs/generate.md, "Under mpirun").
//
// The token stream is cut on the boundaries of the one-process scoring's prefill calls (two chunks,
// apps/lib/scoring.h) into one contiguous piece per rank, of about equal length. Rank r runs the model
// on its piece layer by layer: block i goes over all of the piece's calls, carrying the block's state
// (TimestepNorm statistics, CEMA state, a partial chunk's keys and values) from call to call, and
// starts from the state rank r - 1 left at the end of its piece, which rank r - 1 sends as soon as
// its block i is done. So the ranks form a pipeline skewed by one block: rank r works on block i
// while rank r + 1 works on block i - 1, and N ranks finish a text in about (blocks + N - 1) / blocks
// of the time one rank needs for 1 / N of it.
//
// Each (block, call) computes exactly what the one-process scoring computes for that call, from the
// same state. In the "windowed" TimestepNorm mode the one-process scoring replaces every norm state
// by a fresh, cache-less forward over the last norm_window_chunks chunks after calls that end on a
// due boundary (nn/streaming.h); here the rank that owns the next call computes those fresh states
// itself from the window's tokens (every rank holds the whole text) and puts them in at the same
// boundary. Both modes therefore give the one-process result, up to the order in which the sums of
// the ranks' losses are added.
#include <vector>

#include "apps/lib/scoring.h"
#include "dist/parallel_state.h"

namespace mgl::apps {

// score_tokens of `tokens` over the ranks of `group` (collective; every rank passes the same tokens
// and options and gets the same result). A group of one rank is score_tokens. options.progress is
// called on this rank with its own piece's progress.
ScoringResult score_tokens_parallel(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                                    const ScoringOptions& options, const dist::ProcessGroup& group);

// The first stream position of each rank's piece, and the end: ranks + 1 increasing positions from 0
// to the number of predicted tokens, all but the last on the one-process scoring's call boundaries.
std::vector<int64_t> scoring_pieces(int64_t predicted_tokens, int64_t chunk_size, int ranks);

}  // namespace mgl::apps

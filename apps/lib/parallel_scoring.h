#pragma once
// Scoring one long text over the ranks of a group, exactly, in memory that does not grow with the
// text (docs/generate.md, "Under mpirun").
//
// The token stream is cut into parts of whole calls of the one-process scoring (two chunks,
// apps/lib/scoring.h), dealt in rounds: round k gives rank r the part k * N + r. Rank r runs the model
// on its part layer by layer: block i goes over all of the part's calls, carrying the block's state
// (TimestepNorm statistics, CEMA state; a part starts on a chunk boundary, so no keys and values) from
// call to call, and starts from the state the previous part left at its end, which the previous
// rank (for rank 0, rank N - 1 in the previous round) sends as soon as its own block i is done. So
// the ranks form a pipeline skewed by one block that wraps around from the last rank to the first:
// with at least as many stages (blocks and the final norm) as ranks, no rank waits once the pipeline
// has filled, and N ranks score a long text in about 1 / N of the time of one. A rank holds one
// part's activations (part_tokens x model_dim values); every rank reads the whole stream, keeping its
// own parts and the window before them.
//
// Each (block, call) computes exactly what the one-process scoring computes for that call, from the
// same state. In the "windowed" TimestepNorm mode the one-process scoring replaces every norm state
// by a fresh, cache-less forward over the last norm_window_chunks chunks after calls that end on a
// due boundary (nn/streaming.h); here the rank that owns the next call computes those fresh states
// itself from the window's tokens and puts them in at the same boundary. Both modes therefore give
// the one-process result, up to the order in which the sums of the ranks' losses are added.
#include <vector>

#include "apps/lib/scoring.h"
#include "dist/parallel_state.h"

namespace mgl::apps {

// The most tokens of a rank's part (rounded up to whole calls): what bounds a rank's memory.
constexpr int64_t kPartTokens = int64_t{1} << 16;

// The tokens of a rank's part for a stream of at most `stream_tokens` ids: an even share of the
// ranks (so that a short text, one round, still occupies every rank), at most kPartTokens, in whole
// calls of two chunks of `chunk_size`.
int64_t scoring_part_tokens(int64_t stream_tokens, int64_t chunk_size, int ranks);

// score_stream of `source` over the ranks of `group`, in parts of `part_tokens` (a positive multiple
// of two chunks). Collective: every rank passes a source of the same stream and the same options,
// and gets the same result. A group of one rank is score_stream. options.progress is called on this
// rank after each of its calls.
ScoringResult score_stream_parallel(const nn::Megalodon& model, TokenSource& source, const ScoringOptions& options,
                                    const dist::ProcessGroup& group, int64_t part_tokens);
// The same of ids in memory, in parts of scoring_part_tokens(tokens.size(), ...) when `part_tokens`
// is 0.
ScoringResult score_tokens_parallel(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                                    const ScoringOptions& options, const dist::ProcessGroup& group,
                                    int64_t part_tokens = 0);

}  // namespace mgl::apps

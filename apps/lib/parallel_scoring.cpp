#include "apps/lib/parallel_scoring.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "nn/chunk_parallel.h"
#include "ops/ops.h"

namespace mgl::apps {

namespace {

// The stream positions where the one-process scoring's model calls start, within [begin, end), and end.
std::vector<int64_t> call_starts(int64_t begin, int64_t end, int64_t c) {
  std::vector<int64_t> starts;
  const int64_t piece = nn::StreamingSession::kChunksPerCall * c;  // score_stream feeds pieces of two chunks
  for (int64_t p = begin; p < end;) {
    starts.push_back(p);
    const int64_t piece_end = std::min((p / piece + 1) * piece, end);
    p += nn::StreamingSession::call_length(p, piece_end - p, c);
  }
  starts.push_back(end);
  return starts;
}

// What a rank's parts share: the model, where its activations live, and the ring's links. The states
// travel through the host (the group's CPU communicator), whatever the device: the ring is a cycle,
// and a device backend's send would hold its stream until the peer receives (NCCL), so that rank 0
// sending to rank 1 and the last rank sending to rank 0 could wait for each other. Sends to the next
// rank are waited at once; the last rank's sends to rank 0, which receives them only in its next
// round, a round later.
struct Ring {
  const nn::Megalodon& model;
  const ScoringOptions& options;
  const nn::StreamingOptions& streaming;
  Device device;
  DType state_dtype;
  dist::Communicator& host;
  int previous, next;  // the ranks of the previous and of the next part
  int64_t total;       // the tokens to predict when known in advance (progress), else 0
  dist::PendingWork wrapped, wrapped_before;  // the last rank's sends of this round and of the previous one

  // Sends a block's (or the final norm's, without CEMA) state to the next part's rank
  // (nn::flatten_layer_state, then its count apart).
  void send_state(const nn::LayerState& s, int tag) {
    dist::PendingWork sent;
    dist::PendingWork& pending = next == 0 ? wrapped : sent;
    pending.add(host.send(contiguous(to(nn::flatten_layer_state(s, s.cema.defined()), Device::cpu())), next, 2 * tag));
    pending.add(host.send(contiguous(to(s.norm.count, Device::cpu())), next, 2 * tag + 1));
    sent.wait_all();
  }

  nn::LayerState receive_state(bool with_cema, int tag) {
    const nn::MegalodonConfig& c = model.config();
    const int64_t g = c.norm_num_groups, h = with_cema ? c.model_dim * c.cema_ndim * 2 : 0;
    const Tensor flat = Tensor::empty({2 * g + h}, state_dtype);
    const Tensor count = Tensor::empty({1}, DType::i64);
    dist::WorkHandle a = host.recv(flat, previous, 2 * tag);
    dist::WorkHandle b = host.recv(count, previous, 2 * tag + 1);
    a->wait();
    b->wait();
    const Tensor state = to(flat, device);
    nn::LayerState s;
    s.norm.count = to(count, device);
    s.norm.mean = reshape(slice(state, 0, 0, g), {1, g});
    s.norm.var = reshape(slice(state, 0, g, 2 * g), {1, g});
    if (with_cema) s.cema = reshape(slice(state, 0, 2 * g, 2 * g + h), {1, c.model_dim, c.cema_ndim, 2});
    return s;
  }

  // Scores the part [begin, end) of the stream (held by `tokens`, with the window before it) into
  // `mine`; `followed`: another part follows, whose rank gets the states.
  void run_part(const TokenWindow& tokens, int64_t begin, int64_t end, bool followed, ScoringResult& mine) {
    const int64_t c = model.config().chunk_size;
    const std::vector<int64_t> starts = call_starts(begin, end, c);
    const size_t calls = starts.size() - 1;
    // The windowed mode's fresh norm states, for each call of this part that starts on a due boundary.
    std::vector<std::optional<nn::ModelState>> fresh(calls);
    for (size_t j = 0; j < calls; ++j) {
      const int64_t p = starts[j];
      if (p == 0 || !nn::StreamingSession::reestimates_at(streaming, p, c)) continue;
      nn::ModelState window;
      model.forward(tokens.tensor(p - streaming.norm_window_chunks * c, p, device), nullptr, &window);
      fresh[j] = std::move(window);
    }

    std::vector<Tensor> x(calls);
    for (size_t j = 0; j < calls; ++j) x[j] = model.embed_tokens(tokens.tensor(starts[j], starts[j + 1], device));
    // Block i (i == blocks: the final norm) over every call, from the previous part's state.
    const int64_t blocks = model.num_blocks();
    for (int64_t i = 0; i <= blocks; ++i) {
      const bool is_block = i < blocks;
      std::optional<nn::LayerState> state;
      if (begin > 0) state = receive_state(is_block, static_cast<int>(i));
      for (size_t j = 0; j < calls; ++j) {
        if (fresh[j]) {
          if (!state) state.emplace();
          state->norm = is_block ? fresh[j]->layers[i].norm : fresh[j]->final_norm;
        }
        nn::LayerState next_state;
        if (is_block) {
          x[j] = model.block(i).forward(x[j], state ? &*state : nullptr, &next_state);
        } else {
          x[j] = model.final_norm().forward(x[j], state ? &state->norm : nullptr, &next_state.norm);
        }
        state = std::move(next_state);
      }
      if (followed) send_state(*state, static_cast<int>(i));
    }

    for (size_t j = 0; j < calls; ++j) {
      add_call_scores(tokens.ids(starts[j] + 1, starts[j + 1] + 1), starts[j], model.project(x[j]), options, mine);
      x[j] = Tensor();
      if (options.progress) options.progress(starts[j + 1], total);
    }
  }
};

// The curve as dense arrays over every bucket a stream of `predicted` positions can reach.
int64_t bucket_index(int64_t begin, const ScoringOptions& o) {
  if (o.buckets == "linear") return begin / o.bucket_width;
  int64_t index = 0;
  while ((int64_t{1} << (index + 1)) <= begin) ++index;
  return index;
}

}  // namespace

int64_t scoring_part_tokens(int64_t stream_tokens, int64_t c, int ranks) {
  const int64_t call = nn::StreamingSession::kChunksPerCall * c;
  const int64_t share = (stream_tokens + ranks - 1) / ranks;
  return std::clamp<int64_t>((share + call - 1) / call, 1, std::max<int64_t>(1, kPartTokens / call)) * call;
}

ScoringResult score_stream_parallel(const nn::Megalodon& model, TokenSource& source, const ScoringOptions& options,
                                    const dist::ProcessGroup& group, int64_t part_tokens) {
  if (group.size() == 1) return score_stream(model, source, options);
  const int64_t c = model.config().chunk_size, call = nn::StreamingSession::kChunksPerCall * c;
  MGL_CHECK(part_tokens >= call && part_tokens % call == 0, "scoring: part_tokens must be a positive multiple of ",
            call, " (two chunks), got ", part_tokens);
  TokenWindow tokens(source, model.config().vocab_size);
  check_scoring_inputs(options, tokens);
  NoGradGuard no_grad;
  const nn::StreamingOptions streaming = options.streaming.value_or(nn::StreamingOptions::from_config(model.config()));
  streaming.validate();
  const int r = group.rank(), ranks = group.size();
  Ring ring{model,
            options,
            streaming,
            model.block(0).parameters().front().device(),
            timestep_norm_state_dtype(model.compute_dtype()),
            group.on(Device::cpu()),
            (r + ranks - 1) % ranks,
            (r + 1) % ranks,
            source.size() ? *source.size() - 1 : 0,
            {},
            {}};
  const int64_t window = streaming.timestep_norm_mode == "windowed" ? streaming.norm_window_chunks * c : 0;
  ScoringResult mine;
  for (int64_t round = 0;; ++round) {
    const int64_t begin = (round * ranks + r) * part_tokens;
    // The part, the window before it, and two ids after it: its last target, and whether a part follows.
    tokens.read_to(begin + part_tokens + 2, std::max<int64_t>(0, begin - window));
    const int64_t predicted = tokens.end() - 1;  // all of them once the stream is complete
    if (predicted <= begin) break;               // only then
    const int64_t end = std::min(begin + part_tokens, predicted);
    ring.run_part(tokens, begin, end, end < predicted, mine);
    if (ring.next == 0) {
      ring.wrapped_before.wait_all();
      std::swap(ring.wrapped, ring.wrapped_before);
    }
  }
  ring.wrapped_before.wait_all();

  // The sums over the ranks (dense over the curve's buckets).
  const int64_t predicted = tokens.end() - 1;
  const int64_t buckets = bucket_index(predicted, options) + 1;
  std::vector<double> sums(2 * buckets + 1, 0.0);  // [tokens per bucket | nll per bucket | total nll]
  for (const PositionBucket& b : mine.curve) {
    sums[bucket_index(b.begin, options)] += static_cast<double>(b.tokens);
    sums[buckets + bucket_index(b.begin, options)] += b.nll;
  }
  sums.back() = mine.total_nll;
  const Tensor reduced = Tensor::from_vector(sums, {static_cast<int64_t>(sums.size())});
  group.on(Device::cpu()).all_reduce(reduced, dist::ReduceOp::sum)->wait();
  const std::vector<double> all = reduced.to_vector<double>();

  ScoringResult result;
  result.tokens = predicted;
  result.total_nll = all.back();
  for (int64_t k = 0; k < buckets; ++k) {
    if (all[k] == 0) continue;
    const int64_t begin = options.buckets == "linear" ? k * options.bucket_width : int64_t{1} << k;
    const int64_t end = options.buckets == "linear" ? begin + options.bucket_width : 2 * begin;
    result.curve.push_back({begin, end, static_cast<int64_t>(all[k]), all[buckets + k]});
  }
  finish_scoring(result, options);
  return result;
}

ScoringResult score_tokens_parallel(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                                    const ScoringOptions& options, const dist::ProcessGroup& group,
                                    int64_t part_tokens) {
  TokenVector source(tokens);
  const int64_t part = part_tokens > 0 ? part_tokens
                                       : scoring_part_tokens(static_cast<int64_t>(tokens.size()),
                                                             model.config().chunk_size, group.size());
  return score_stream_parallel(model, source, options, group, part);
}

}  // namespace mgl::apps

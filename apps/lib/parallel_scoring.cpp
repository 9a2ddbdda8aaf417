#include "apps/lib/parallel_scoring.h"

#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace mgl::apps {

namespace {

// The stream positions where the one-process scoring's model calls start, within [begin, end), and end.
std::vector<int64_t> call_starts(int64_t begin, int64_t end, int64_t c) {
  std::vector<int64_t> starts;
  const int64_t piece = nn::StreamingSession::kChunksPerCall * c;  // score_tokens feeds pieces of two chunks
  for (int64_t p = begin; p < end;) {
    starts.push_back(p);
    const int64_t piece_end = std::min((p / piece + 1) * piece, end);
    p += nn::StreamingSession::call_length(p, piece_end - p, c);
  }
  starts.push_back(end);
  return starts;
}

// Sends a block's (or the final norm's, without CEMA) state to `peer` (nn::flatten_layer_state, then
// its count apart); waits, then returns.
void send_state(const nn::LayerState& s, dist::Communicator& comm, int peer, int tag) {
  dist::WorkHandle a = comm.send(contiguous(nn::flatten_layer_state(s, s.cema.defined())), peer, 2 * tag);
  dist::WorkHandle b = comm.send(contiguous(s.norm.count), peer, 2 * tag + 1);
  a->wait();
  b->wait();
}

nn::LayerState receive_state(const nn::Megalodon& model, bool with_cema, DType dtype, const Device& device,
                             dist::Communicator& comm, int peer, int tag) {
  const nn::MegalodonConfig& c = model.config();
  const int64_t g = c.norm_num_groups, h = with_cema ? c.model_dim * c.cema_ndim * 2 : 0;
  const Tensor flat = Tensor::empty({2 * g + h}, dtype, device);
  const Tensor count = Tensor::empty({1}, DType::i64, device);
  dist::WorkHandle a = comm.recv(flat, peer, 2 * tag);
  dist::WorkHandle b = comm.recv(count, peer, 2 * tag + 1);
  a->wait();
  b->wait();
  nn::LayerState s;
  s.norm.count = count;
  s.norm.mean = reshape(slice(flat, 0, 0, g), {1, g});
  s.norm.var = reshape(slice(flat, 0, g, 2 * g), {1, g});
  if (with_cema) s.cema = reshape(slice(flat, 0, 2 * g, 2 * g + h), {1, c.model_dim, c.cema_ndim, 2});
  return s;
}

// The state a stream starts from (an empty first piece passes it on): the norm's prior, CEMA at zero.
nn::LayerState prior_state(const nn::Megalodon& model, bool with_cema, const Device& device) {
  const nn::MegalodonConfig& c = model.config();
  nn::LayerState s;
  s.norm = timestep_norm_initial_state(1, c.norm_num_groups, model.compute_dtype(), device);
  if (with_cema)
    s.cema = Tensor::zeros({1, c.model_dim, c.cema_ndim, 2}, timestep_norm_state_dtype(model.compute_dtype()), device);
  return s;
}

// The curve as dense arrays over every bucket a stream of `predicted` positions can reach.
int64_t bucket_index(int64_t begin, const ScoringOptions& o) {
  if (o.buckets == "linear") return begin / o.bucket_width;
  int64_t index = 0;
  while ((int64_t{1} << (index + 1)) <= begin) ++index;
  return index;
}

}  // namespace

std::vector<int64_t> scoring_pieces(int64_t predicted, int64_t c, int ranks) {
  const int64_t piece = nn::StreamingSession::kChunksPerCall * c;
  const int64_t pieces = (predicted + piece - 1) / piece;
  std::vector<int64_t> bounds;
  for (int r = 0; r <= ranks; ++r) bounds.push_back(std::min(predicted, pieces * r / ranks * piece));
  bounds.back() = predicted;
  return bounds;
}

ScoringResult score_tokens_parallel(const nn::Megalodon& model, const std::vector<int32_t>& tokens,
                                    const ScoringOptions& options, const dist::ProcessGroup& group) {
  if (group.size() == 1) return score_tokens(model, tokens, options);
  check_scoring_inputs(model, tokens, options);
  NoGradGuard no_grad;
  const nn::StreamingOptions streaming = options.streaming.value_or(nn::StreamingOptions::from_config(model.config()));
  streaming.validate();
  const int64_t c = model.config().chunk_size, predicted = static_cast<int64_t>(tokens.size()) - 1;
  const int r = group.rank(), ranks = group.size();
  const std::vector<int64_t> bounds = scoring_pieces(predicted, c, ranks);
  const std::vector<int64_t> starts = call_starts(bounds[r], bounds[r + 1], c);
  const Device device = model.block(0).parameters().front().device();
  const DType state_dtype = timestep_norm_state_dtype(model.compute_dtype());
  dist::Communicator& comm = group.on(device);

  auto ids_of = [&](int64_t begin, int64_t end) {
    const std::vector<int32_t> ids(tokens.begin() + begin, tokens.begin() + end);
    return Tensor::from_vector(ids, {1, end - begin}, DType::i64, device);
  };
  // The windowed mode's fresh norm states, for each call of this piece that starts on a due boundary.
  const size_t calls = starts.size() - 1;
  std::vector<std::optional<nn::ModelState>> fresh(calls);
  for (size_t j = 0; j < calls; ++j) {
    const int64_t p = starts[j];
    if (p == 0 || !nn::StreamingSession::reestimates_at(streaming, p, c)) continue;
    nn::ModelState window;
    model.forward(ids_of(p - streaming.norm_window_chunks * c, p), nullptr, &window);
    fresh[j] = std::move(window);
  }

  std::vector<Tensor> x(calls);
  for (size_t j = 0; j < calls; ++j) x[j] = model.embed_tokens(ids_of(starts[j], starts[j + 1]));
  // Block i (i == blocks: the final norm) over every call, from the previous rank's state.
  const int64_t blocks = model.num_blocks();
  for (int64_t i = 0; i <= blocks; ++i) {
    const bool is_block = i < blocks;
    std::optional<nn::LayerState> state;
    if (r > 0) state = receive_state(model, is_block, state_dtype, device, comm, r - 1, static_cast<int>(i));
    if (!state && calls == 0 && r + 1 < ranks) state = prior_state(model, is_block, device);  // an empty piece
    for (size_t j = 0; j < calls; ++j) {
      if (fresh[j]) {
        if (!state) state.emplace();
        state->norm = is_block ? fresh[j]->layers[i].norm : fresh[j]->final_norm;
      }
      nn::LayerState next;
      if (is_block) {
        x[j] = model.block(i).forward(x[j], state ? &*state : nullptr, &next);
      } else {
        x[j] = model.final_norm().forward(x[j], state ? &state->norm : nullptr, &next.norm);
      }
      state = std::move(next);
    }
    if (r + 1 < ranks) send_state(*state, comm, r + 1, static_cast<int>(i));
  }

  // Each call's losses, then the sums over the ranks (dense over the curve's buckets).
  ScoringResult mine;
  for (size_t j = 0; j < calls; ++j) {
    add_call_scores(tokens, starts[j], model.project(x[j]), options, mine);
    x[j] = Tensor();
    if (options.progress) options.progress(starts[j + 1] - bounds[r], bounds[r + 1] - bounds[r]);
  }
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

}  // namespace mgl::apps

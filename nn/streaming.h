#pragma once
// Streaming inference with unlimited context (docs/megalodon.md §6): a StreamingSession feeds B
// sequences to a MEGALODON model in pieces of any length, carrying the ModelState (TimestepNorm
// statistics, CEMA states, the KV cache of the current chunk) from call to call. Its memory does not depend on how
// many tokens it has processed.
//
// Every model call is a legal cached step (§6.2): prefill() splits its tokens into
//   1. the rest of the chunk the cache has started (m + n <= c),
//   2. whole chunks, two per call (MAX_CHUNKS_PER_BATCH of the official inference.py / generation.py),
//   3. the tail that does not fill a chunk, in one call;
// decode() is one token per sequence.
//
// TimestepNorm mode (§6.3):
//   "exact"     the running statistics of everything seen: the logits equal those of one forward
//               over the whole sequence.
//   "windowed"  the official inference code's re-estimation: after every prefill call that ends on a
//               chunk boundary e with e >= norm_window_after_chunks chunks, every norm state is
//               replaced by the statistics of a fresh, cache-less forward over the last
//               norm_window_chunks chunks (Megalodon::reestimate_norm_states). As in generation.py,
//               decode() never re-estimates. The session keeps those last tokens for it (a bounded
//               window, not the history).
//
// On CUDA, decode() runs through a CudaDecoder (nn/cuda_decoder.h): preallocated buffers and one
// replayed CUDA graph per token, no allocation and no host synchronisation inside a step. The state
// moves into the decoder at the first decode() after a prefill and back (export_state) when prefill()
// or state() needs it; StreamingOptions::cuda_decoder = false keeps every call in Megalodon::forward.
#include <cstdint>
#include <functional>
#include <string>

#include <deque>
#include <memory>
#include <vector>

#include "nn/cuda_decoder.h"
#include "nn/megalodon.h"

namespace mgl::nn {

struct StreamingOptions {
  std::string timestep_norm_mode = "windowed";  // "exact" or "windowed"
  int64_t norm_window_chunks = 6;
  int64_t norm_window_after_chunks = 8;
  bool cuda_decoder = true;  // decode() through CudaDecoder when the model is on a GPU

  // The inference settings of a model config (timestep_norm_mode, norm_window_*).
  static StreamingOptions from_config(const MegalodonConfig& config);
  void validate() const;  // throws mgl::Error naming the bad field
};

// Sees the logits of every model call of prefill(): [B, n, vocab] in f32 on the model's device, for
// the positions [first_position, first_position + n) of the stream.
using LogitsObserver = std::function<void(int64_t first_position, const Tensor& logits)>;

class StreamingSession {
 public:
  static constexpr int64_t kChunksPerCall = 2;  // whole chunks per prefill call (official: 2)
  // How many of `left` tokens prefill() gives its next model call at stream position `position`
  // (chunk size c): the rest of a started chunk, else up to kChunksPerCall whole chunks, else the tail.
  static int64_t call_length(int64_t position, int64_t left, int64_t c);

  // `model` must be in evaluation mode (model.eval()) and outlive the session; calls run without
  // gradients on the model's device, in its compute dtype.
  StreamingSession(const Megalodon& model, int64_t batch);
  StreamingSession(const Megalodon& model, int64_t batch, const StreamingOptions& options);

  // Feeds ids [B, n] (n >= 1, integer, any device) and returns the logits of the last position,
  // [B, vocab] f32 on the model's device. `observe`, when given, sees the logits of every call.
  Tensor prefill(const Tensor& ids, const LogitsObserver& observe = {});
  // Feeds one token per sequence, ids [B], and returns its logits [B, vocab].
  Tensor decode(const Tensor& ids);

  // Greedy decoding with the choice made on the device, for the CUDA decoder
  // (can_decode_greedily_on_device()). start_greedy() feeds `ids` [B] and sets the repetition penalty
  // and its starting context per sequence (ids [0, choices) may be chosen; 0: all). Each
  // next_greedy() then returns the next token of every sequence, the greedy choice after the last
  // token fed (equal to decode() followed by apps::Sampler's greedy choice), and with `feed` also
  // feeds it. The feed is enqueued before the host waits for the choice, so the device computes the
  // following token while the caller handles this one.
  bool can_decode_greedily_on_device() const;
  void start_greedy(const std::vector<int64_t>& ids, double repetition_penalty, int64_t choices,
                    const std::vector<std::vector<int32_t>>& context);
  std::vector<int64_t> next_greedy(bool feed);

  int64_t batch() const { return batch_; }
  int64_t position() const { return position_; }  // tokens processed per sequence
  const StreamingOptions& options() const { return options_; }
  // Whether the windowed mode re-estimates the norm states after a call that ends at `position`.
  static bool reestimates_at(const StreamingOptions& options, int64_t position, int64_t c);
  const ModelState& state() const;
  // Bytes held between calls: the ModelState and the token window of the windowed mode. Constant
  // in the context length (it varies only with the fill of the current chunk's KV cache).
  int64_t state_bytes() const;
  // Whether decode() has been running through the CUDA decoder.
  bool uses_cuda_decoder() const { return decoder_ != nullptr; }

 private:
  // One model call of n <= what §6.2 allows; advances the state and the position.
  Tensor step(const Tensor& ids);
  void reestimate_if_due();
  // Brings the state (and the decoded tokens of the windowed mode) back from the CUDA decoder.
  void take_state_from_decoder() const;
  void remember_recent(const Tensor& tokens) const;  // windowed mode: keep the newest window of ids
  // The CUDA decoder holding the current state (created at the first use).
  CudaDecoder& decoder_with_state();
  // Counts a decoder step of `ids` (host): the position, and the windowed mode's token window.
  void count_decoded(std::vector<int64_t> ids);

  const Megalodon& model_;
  int64_t batch_;
  StreamingOptions options_;
  Device device_;
  int64_t position_ = 0;
  mutable ModelState state_;
  mutable Tensor recent_;  // [B, <= norm_window_chunks * c] i64: the newest tokens (windowed mode only)
  std::unique_ptr<CudaDecoder> decoder_;
  mutable bool state_in_decoder_ = false;
  // Ids decoded by the CUDA decoder since the state was last taken back (one [B] row per token, on the
  // host, at most one window): the windowed mode's token window without a device concat per token.
  mutable std::deque<std::vector<int64_t>> decoded_ids_;
};

// Bytes of every tensor of a ModelState.
int64_t model_state_bytes(const ModelState& state);

}  // namespace mgl::nn

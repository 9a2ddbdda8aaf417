#include "nn/streaming.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "ops/ops.h"

namespace mgl::nn {

namespace {

int64_t tensor_bytes(const Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

int64_t norm_state_bytes(const TimestepNormState& s) {
  return tensor_bytes(s.count) + tensor_bytes(s.mean) + tensor_bytes(s.var);
}

Device model_device(const Megalodon& model) {
  const std::vector<Parameter> parameters = model.named_parameters();
  return parameters.empty() ? Device::cpu() : parameters.front().tensor.device();
}

}  // namespace

int64_t model_state_bytes(const ModelState& state) {
  int64_t bytes = norm_state_bytes(state.final_norm);
  for (const LayerState& layer : state.layers)
    bytes += norm_state_bytes(layer.norm) + tensor_bytes(layer.cema) + tensor_bytes(layer.keys) +
             tensor_bytes(layer.values);
  return bytes;
}

StreamingOptions StreamingOptions::from_config(const MegalodonConfig& config) {
  return {config.timestep_norm_mode, config.norm_window_chunks, config.norm_window_after_chunks};
}

void StreamingOptions::validate() const {
  MGL_CHECK(timestep_norm_mode == "exact" || timestep_norm_mode == "windowed",
            "streaming: timestep_norm_mode must be \"exact\" or \"windowed\", got \"", timestep_norm_mode, "\"");
  MGL_CHECK(norm_window_chunks >= 1, "streaming: norm_window_chunks must be >= 1, got ", norm_window_chunks);
  MGL_CHECK(norm_window_after_chunks >= norm_window_chunks, "streaming: norm_window_after_chunks (",
            norm_window_after_chunks, ") must be at least norm_window_chunks (", norm_window_chunks, ")");
}

StreamingSession::StreamingSession(const Megalodon& model, int64_t batch)
    : StreamingSession(model, batch, StreamingOptions::from_config(model.config())) {}

StreamingSession::StreamingSession(const Megalodon& model, int64_t batch, const StreamingOptions& options)
    : model_(model), batch_(batch), options_(options), device_(model_device(model)) {
  MGL_CHECK(batch >= 1, "streaming: batch must be >= 1, got ", batch);
  MGL_CHECK(!model.is_training(), "streaming: the model is in training mode; call model.eval() first");
  options_.validate();
}

const ModelState& StreamingSession::state() const {
  take_state_from_decoder();
  return state_;
}

void StreamingSession::take_state_from_decoder() const {
  if (!state_in_decoder_) return;
  state_ = decoder_->export_state();
  state_in_decoder_ = false;
  if (decoded_ids_.empty()) return;
  std::vector<int64_t> rows(static_cast<size_t>(batch_) * decoded_ids_.size());  // [B, tokens]
  for (size_t t = 0; t < decoded_ids_.size(); ++t)
    for (int64_t b = 0; b < batch_; ++b) rows[b * decoded_ids_.size() + t] = decoded_ids_[t][b];
  decoded_ids_.clear();
  remember_recent(to(Tensor::from_vector(rows, {batch_, static_cast<int64_t>(rows.size()) / batch_}), device_));
}

void StreamingSession::remember_recent(const Tensor& tokens) const {
  const Tensor joined = recent_.defined() ? concat({recent_, tokens}, 1) : tokens;
  const int64_t keep = std::min(joined.size(1), options_.norm_window_chunks * model_.config().chunk_size);
  recent_ = contiguous(slice(joined, 1, joined.size(1) - keep, joined.size(1)));
}

Tensor StreamingSession::prefill(const Tensor& ids, const LogitsObserver& observe) {
  MGL_CHECK(ids.defined() && ids.dim() == 2 && is_integer(ids.dtype()) && ids.size(0) == batch_ && ids.size(1) >= 1,
            "streaming prefill: expected token ids [", batch_, ", n >= 1] of an integer dtype, got ",
            ids.defined() ? ids.describe() : "an undefined tensor");
  const int64_t c = model_.config().chunk_size, n = ids.size(1);
  Tensor logits;
  for (int64_t t = 0; t < n;) {
    const int64_t take = call_length(position_, n - t, c);
    logits = step(slice(ids, 1, t, t + take));
    if (observe) observe(position_ - take, logits);
    reestimate_if_due();
    t += take;
  }
  return reshape(contiguous(slice(logits, 1, logits.size(1) - 1, logits.size(1))), {batch_, logits.size(2)});
}

Tensor StreamingSession::decode(const Tensor& ids) {
  MGL_CHECK(ids.defined() && ids.dim() == 1 && is_integer(ids.dtype()) && ids.size(0) == batch_,
            "streaming decode: expected one token id per sequence, [", batch_, "] of an integer dtype, got ",
            ids.defined() ? ids.describe() : "an undefined tensor");
  if (options_.cuda_decoder && device_.is_cuda()) {
    NoGradGuard no_grad;
    // A copy: the decoder's buffer is overwritten by the next step (one small stream-ordered copy).
    const Tensor& logits = decoder_with_state().step(ids);
    count_decoded(options_.timestep_norm_mode == "windowed" ? to(ids, Device::cpu()).to_vector<int64_t>()
                                                             : std::vector<int64_t>{});
    const Tensor result = Tensor::empty(logits.shape(), logits.dtype(), device_);
    copy_(result, logits);
    return result;
  }
  const Tensor logits = step(reshape(ids, {batch_, 1}));  // m + 1 <= c: always a legal step
  return reshape(logits, {batch_, logits.size(2)});
}

CudaDecoder& StreamingSession::decoder_with_state() {
  if (!decoder_) decoder_ = std::make_unique<CudaDecoder>(model_, batch_, model_.compute_dtype(), DecoderOptions{device_});
  if (!state_in_decoder_) {
    decoder_->import_state(state_);
    state_in_decoder_ = true;
  }
  return *decoder_;
}

void StreamingSession::count_decoded(std::vector<int64_t> ids) {
  position_ += 1;
  if (options_.timestep_norm_mode != "windowed") return;
  decoded_ids_.push_back(std::move(ids));
  const auto window = static_cast<size_t>(options_.norm_window_chunks * model_.config().chunk_size);
  if (decoded_ids_.size() > window) decoded_ids_.pop_front();
}

bool StreamingSession::can_decode_greedily_on_device() const { return options_.cuda_decoder && device_.is_cuda(); }

void StreamingSession::start_greedy(const std::vector<int64_t>& ids, double repetition_penalty, int64_t choices,
                                    const std::vector<std::vector<int32_t>>& context) {
  MGL_CHECK(can_decode_greedily_on_device(), "streaming: greedy decoding on the device needs the CUDA decoder (the model is on ",
            device_.str(), ")");
  MGL_CHECK(static_cast<int64_t>(ids.size()) == batch_, "streaming start_greedy: ", ids.size(), " ids for a batch of ",
            batch_);
  NoGradGuard no_grad;
  CudaDecoder& decoder = decoder_with_state();
  decoder.select_greedily(repetition_penalty, choices, context);
  decoder.step(Tensor::from_vector(ids, {batch_}, DType::i64));
  count_decoded(ids);
}

std::vector<int64_t> StreamingSession::next_greedy(bool feed) {
  MGL_CHECK(decoder_ && state_in_decoder_ && decoder_->selects_greedily(),
            "streaming next_greedy: call start_greedy() first (and no prefill() since)");
  decoder_->copy_ids_to_host();
  if (feed) decoder_->step();  // from the choice the copy is taking, enqueued before waiting for it
  std::vector<int64_t> ids = decoder_->ids_on_host();
  for (int64_t b = 0; b < batch_; ++b)
    MGL_CHECK(ids[b] >= 0, "streaming next_greedy: the logits of sequence ", b, " hold NaN or +inf at position ",
              position_);
  if (feed) count_decoded(ids);
  return ids;
}

Tensor StreamingSession::step(const Tensor& ids) {
  NoGradGuard no_grad;
  take_state_from_decoder();
  const Tensor tokens = Tensor::empty(ids.shape(), DType::i64, device_);  // i64 on the model's device
  copy_(tokens, ids);
  ModelState next;
  const Tensor logits = model_.forward(tokens, &state_, &next);
  state_ = std::move(next);
  position_ += tokens.size(1);
  if (options_.timestep_norm_mode == "windowed") remember_recent(tokens);
  return logits;
}

int64_t StreamingSession::call_length(int64_t position, int64_t left, int64_t c) {
  const int64_t cached = position % c;
  return cached > 0    ? std::min(left, c - cached)  // finish the started chunk
         : left >= c   ? std::min(left / c, kChunksPerCall) * c
                       : left;  // the tail
}

bool StreamingSession::reestimates_at(const StreamingOptions& options, int64_t position, int64_t c) {
  return options.timestep_norm_mode == "windowed" && position % c == 0 && position >= options.norm_window_after_chunks * c;
}

void StreamingSession::reestimate_if_due() {
  if (!reestimates_at(options_, position_, model_.config().chunk_size)) return;
  NoGradGuard no_grad;
  model_.reestimate_norm_states(recent_, state_);  // recent_ holds exactly the last window
}

int64_t StreamingSession::state_bytes() const {
  take_state_from_decoder();
  return model_state_bytes(state_) + tensor_bytes(recent_);
}

}  // namespace mgl::nn

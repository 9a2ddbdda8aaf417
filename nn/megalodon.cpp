#include "nn/megalodon.h"

#include <cmath>
#include <optional>

#include "autograd/grad_mode.h"
#include "autograd/recompute.h"
#include "dist/vocab_parallel_cross_entropy.h"
#include "nn/compute_copy.h"
#include "ops/ops.h"

namespace mgl::nn {

MegalodonBlock::MegalodonBlock(const MegalodonConfig& config, int64_t layer_index, const InitOptions& options,
                               const TensorParallel& tp) {
  mega_ = register_module("mega", std::make_shared<MovingAverageGatedAttention>(config, options, tp));
  nffn_ = register_module("nffn", std::make_shared<NormalizedFeedForward>(config, layer_index, options, tp));
}

Tensor MegalodonBlock::forward(const Tensor& x, const LayerState* incoming, LayerState* outgoing,
                               const StateHandoff* handoff) const {
  return nffn_->forward(mega_->forward(x, incoming, outgoing, handoff), x);
}

OutputLayer::OutputLayer(const MegalodonConfig& config, const InitOptions& options) {
  final_norm =
      register_module("final_norm", std::make_shared<TimestepNorm>(config.model_dim, config.norm_num_groups,
                                                                   config.norm_eps, options));
  if (!config.share_embedding) {
    output = register_module("output", std::make_shared<Linear>(config.model_dim, config.vocab_size, false, options,
                                                                LinearSplit::columns));
    // The untied head starts like the embedding: normal(0, 1/sqrt(D)) truncated at ±3 std (docs/megalodon.md §2.7).
    const double std = 1.0 / std::sqrt(double(config.model_dim));
    copy_(output->weight(), init::truncated_normal(output->weight().shape(), std, 3.0 * std, options));
  }
}

Megalodon::Megalodon(const MegalodonConfig& config, const InitOptions& options, const TensorParallel& tp)
    : config_(config), tp_(tp) {
  config.validate();
  check_tensor_parallel_sizes(config, tp.size());
  embed_ = register_module("embed", std::make_shared<Embedding>(config.vocab_size, config.model_dim, options));
  layers_ = register_module("layers", std::make_shared<ModuleList<MegalodonBlock>>());
  for (int64_t i = 0; i < config.num_layers; ++i)
    layers_->push_back(std::make_shared<MegalodonBlock>(config, i, options, tp));
  output_ = register_module("output", std::make_shared<OutputLayer>(config, options));
  shard_parameters(*this, tp);
}

Tensor Megalodon::forward(const Tensor& ids, const ModelState* incoming, ModelState* outgoing) const {
  return project(body(ids, incoming, outgoing));
}

Tensor Megalodon::forward(const Tensor& ids, ChunkRelay& relay) const { return project(body(ids, relay)); }

namespace {

// Before the forward, so that a mismatch costs no forward.
void check_targets(const Tensor& ids, const Tensor& targets) {
  MGL_CHECK(targets.defined() && targets.shape() == ids.shape(), "Megalodon::forward_loss: targets ",
            targets.defined() ? targets.describe() : "(undefined)", " do not match ids ", ids.describe());
}

}  // namespace

Tensor Megalodon::forward_loss(const Tensor& ids, const Tensor& targets) const {
  check_targets(ids, targets);
  return head_loss(body(ids, nullptr, nullptr), targets);
}

Tensor Megalodon::forward_loss(const Tensor& ids, const Tensor& targets, ChunkRelay& relay) const {
  check_targets(ids, targets);
  return head_loss(body(ids, relay), targets);
}

Tensor Megalodon::body(const Tensor& ids, const ModelState* incoming, ModelState* outgoing) const {
  check_ids(ids);
  MGL_CHECK(!incoming || incoming->empty() || static_cast<int64_t>(incoming->layers.size()) == config_.num_layers,
            "Megalodon: the incoming state has ", incoming ? incoming->layers.size() : 0, " layers, the model ",
            config_.num_layers);
  const bool carry = incoming && !incoming->empty();
  if (outgoing) outgoing->layers.assign(config_.num_layers, LayerState());

  Tensor x = embed_tokens(ids);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const std::shared_ptr<MegalodonBlock> block = layers_->begin()[i];
    if (config_.activation_checkpointing && !carry && !outgoing) {
      // Activation recomputation (autograd/recompute.h): the block keeps only its input for backward and
      // runs again there. Only forwards without streaming state (training on independent sequences):
      // a stateful forward keeps its activations, since the state it hands on would be recomputed too.
      auto block_forward = [block](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{block->forward(in[0])};
      };
      x = autograd::recompute("MegalodonBlock", block_forward, {x}, block->parameters())[0];
    } else {
      x = block->forward(x, carry ? &incoming->layers[i] : nullptr, outgoing ? &outgoing->layers[i] : nullptr);
    }
  }
  return output_->final_norm->forward(x, carry ? &incoming->final_norm : nullptr,
                                     outgoing ? &outgoing->final_norm : nullptr);
}

Tensor Megalodon::body(const Tensor& ids, ChunkRelay& relay) const {
  check_ids(ids);
  Tensor x = embed_tokens(ids);
  // Block i (i == num_layers: the final norm) starts from the state received from the previous rank
  // and, unless this is the last rank, hands its own on as soon as TimestepNorm + CEMA have formed it.
  auto incoming = [&](int64_t i, bool with_cema) {
    return relay.receives() ? std::optional<LayerState>(relay.receive(i, with_cema)) : std::nullopt;
  };
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (config_.activation_checkpointing) {
      x = recomputed_block(i, x, relay);
      continue;
    }
    const std::optional<LayerState> in = incoming(i, true);
    LayerState out;
    const StateHandoff handoff = [&relay, i](const LayerState& state, const Tensor& cema_output) {
      return relay.send(i, state, cema_output, true);
    };
    x = layers_->begin()[i]->forward(x, in ? &*in : nullptr, relay.sends() ? &out : nullptr,
                                     relay.sends() ? &handoff : nullptr);
  }
  const std::optional<LayerState> in = incoming(config_.num_layers, false);
  LayerState out;
  x = output_->final_norm->forward(x, in ? &in->norm : nullptr, relay.sends() ? &out.norm : nullptr);
  return relay.sends() ? relay.send(config_.num_layers, out, x, false) : x;
}

Tensor Megalodon::recomputed_block(int64_t i, const Tensor& x, ChunkRelay& relay) const {
  // The block as one recomputed function of (x, the received state) returning (y, the state it hands
  // on), both flat states being ordinary tensors of the recomputed graph. Its first run, under
  // no-grad, sends the state's values as soon as TimestepNorm + CEMA have formed them; the rerun in
  // backward sends nothing. The outgoing state's gradient comes from the next rank through
  // attach_gradient on y (so this rank waits for it before the block's backward, a block's worth of
  // skew instead of TimestepNorm + CEMA's: the price of not storing the block's activations).
  const std::shared_ptr<MegalodonBlock> block = layers_->begin()[i];
  std::vector<Tensor> inputs = {x};
  if (relay.receives()) inputs.push_back(relay.receive_flat(i, true));
  const bool sends = relay.sends();
  const auto first_run = std::make_shared<bool>(true);
  auto block_forward = [block, &relay, i, sends, first_run](const std::vector<Tensor>& in) {
    const std::optional<LayerState> incoming =
        in.size() > 1 ? std::optional<LayerState>(relay.unpack(in[1], true)) : std::nullopt;
    LayerState out;
    Tensor sent;
    const StateHandoff handoff = [&](const LayerState& state, const Tensor& cema_output) {
      sent = relay.pack(state, true);
      if (*first_run) relay.send_values(i, sent);
      return cema_output;
    };
    std::vector<Tensor> outputs = {
        block->forward(in[0], incoming ? &*incoming : nullptr, sends ? &out : nullptr, sends ? &handoff : nullptr)};
    if (sends) outputs.push_back(sent);
    return outputs;
  };
  const std::vector<Tensor> outputs = autograd::recompute("MegalodonBlock", block_forward, inputs, block->parameters());
  *first_run = false;
  return sends ? relay.attach_gradient(i, outputs[1], outputs[0]) : outputs[0];
}

void Megalodon::check_ids(const Tensor& ids) const {
  MGL_CHECK(ids.dim() == 2 && is_integer(ids.dtype()), "Megalodon: expected token ids [B, L] of an integer dtype, got ",
            ids.describe());
}

Tensor Megalodon::embed_tokens(const Tensor& ids) const {
  Tensor x = cast(embed_->forward(ids), compute_dtype_);
  if (config_.scale_embedding) x = mul(x, std::sqrt(double(config_.model_dim)));
  return dropout(x, config_.dropout, is_training());
}

Tensor Megalodon::project(const Tensor& x) const {
  // Under tensor parallelism: the untied head (split by vocabulary) reads every channel of x; the tied
  // one holds this rank's channels of every embedding, so its products are partial sums over D.
  const Tensor logits = output_->output ? output_->output->forward(tp_.gather(x, 2))
                                        : tp_.reduce(linear(x, compute_copy(embed_->weight(), x.dtype())));
  return logits.dtype() == DType::bf16 ? cast(logits, DType::f32) : logits;  // logits and loss in f32 (§2.7)
}

void Megalodon::reestimate_norm_states(const Tensor& recent_ids, ModelState& state) const {
  MGL_CHECK(static_cast<int64_t>(state.layers.size()) == config_.num_layers, "reestimate_norm_states: the state has ",
            state.layers.size(), " layers, the model ", config_.num_layers);
  ModelState fresh;
  forward(recent_ids, nullptr, &fresh);
  for (int64_t i = 0; i < config_.num_layers; ++i) state.layers[i].norm = fresh.layers[i].norm;
  state.final_norm = fresh.final_norm;
}

void Megalodon::set_compute_dtype(DType dtype) {
  MGL_CHECK(is_floating(dtype), "Megalodon: compute dtype must be floating, got ", dtype_name(dtype));
  compute_dtype_ = dtype;
}

namespace {

// logits [B, L, C] and targets [B, L] as the [B L, C] rows and [B L] ids of a cross-entropy.
std::pair<Tensor, Tensor> as_rows(const Tensor& logits, const Tensor& targets) {
  MGL_CHECK(logits.dim() == 3 && targets.dim() == 2 && targets.size(0) == logits.size(0) &&
                targets.size(1) == logits.size(1),
            "Megalodon::loss: logits ", logits.describe(), " and targets ", targets.describe(), " do not match");
  const int64_t rows = logits.size(0) * logits.size(1);
  return {reshape(logits, {rows, logits.size(2)}), reshape(targets, {rows})};
}

}  // namespace

Tensor Megalodon::loss(const Tensor& logits, const Tensor& targets) {
  const auto [rows, ids] = as_rows(logits, targets);
  return cross_entropy(rows, ids);
}

Tensor Megalodon::head_loss(const Tensor& x, const Tensor& targets) const {
  if (tp_.split()) return token_loss(project(x), targets);
  // The head's weight in the compute dtype, as project() uses it (the head has no bias, §2.7): its compute
  // copy (nn/compute_copy.h), as Linear::forward and the tied head of project() read it. A cast() here made the
  // training step cast the [V, D] head every step, and its bf16 gradient back, which the copies do away with.
  const Linear* head = output_->output.get();
  const Tensor weight = compute_copy(head ? head->weight() : embed_->weight(), x.dtype());
  const int64_t rows = x.size(0) * x.size(1);
  return linear_cross_entropy(reshape(x, {rows, x.size(2)}), weight, Tensor(), reshape(targets, {rows}));
}

Tensor Megalodon::token_loss(const Tensor& logits, const Tensor& targets) const {
  if (!vocabulary_split()) return loss(logits, targets);
  const auto [rows, ids] = as_rows(logits, targets);
  return dist::vocab_parallel_cross_entropy(rows, ids, tp_.group());
}

std::shared_ptr<Megalodon> gather_whole_model(const std::shared_ptr<Megalodon>& model) {
  const TensorParallel& tp = model->tensor_parallel();
  if (!tp.split()) return model;
  // Its own generator: the initial values are overwritten, and the run's random stream stays untouched.
  Generator scratch(0);
  const std::vector<Parameter> pieces = model->named_parameters();
  InitOptions options;
  options.generator = &scratch;
  options.dtype = pieces.front().tensor.dtype();
  auto whole = std::make_shared<Megalodon>(model->config(), options);
  const std::vector<Parameter> params = whole->named_parameters();
  NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i)
    replace_values(params[i].tensor, whole_of(pieces[i].tensor, pieces[i].sharding, tp), pieces[i].tensor.device());
  whole->set_compute_dtype(model->compute_dtype());
  whole->train(model->is_training());
  return whole;
}

}  // namespace mgl::nn

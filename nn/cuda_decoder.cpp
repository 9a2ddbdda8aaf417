// CudaDecoder (nn/cuda_decoder.h): weights and buffers set up once, then one step per token. Per
// layer a step is seven kernels (docs/decode.md), each launched to overlap the end of the one before
// (cuda/dependent_launch.cuh):
//   1. decode_timestep_norm   T = TimestepNorm step of X; U = CEMA step of T
//   2. decode_gemv            Z = RMSNorm(U) Wzᵀ + bz, R = silu(RMSNorm(U) Wrᵀ + br),
//                             H1 = RMSNorm(U) Wh1ᵀ + bh1, Vv = silu(T Wvᵀ + bv)
//   3. decode_attention       A = attention of q over the chunk's keys (k, v appended) ⊙ R, in two
//                             kernels: per split of the keys, then the merge of the splits
//   4. decode_gemv            Ŷ = A Wh2ᵀ + H1 + X
//   5. decode_gemv            G = swiglu(LayerNorm(Ŷ) [fc1; fc3]ᵀ)   (or silu(LayerNorm(Ŷ) fc1ᵀ))
//   6. decode_gemv            X = alpha ⊙ (G fc2ᵀ) + X
// then the final TimestepNorm step, the LM head, with select_greedily() the choice of the next token
// (cuda/decode_greedy.h), and the advance of the chunk position.
#include "nn/cuda_decoder.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/grad_mode.h"
#include "base/rope_math.h"
#include "base/timestep_norm_math.h"
#include "core/cuda_context.h"
#include "cuda/decode_attention.h"
#include "cuda/decode_gemv.h"
#include "cuda/decode_graph.h"
#include "cuda/decode_greedy.h"
#include "cuda/decode_step.h"
#include "ops/ops.h"

namespace mgl::nn {

// A TimestepNorm's parameters and running state. Each group keeps its own copy of the count
// (cuda/decode_step.h); ModelState has one count per sequence.
struct CudaDecoder::NormState {
  Tensor weight, bias;     // [D] f32
  Tensor count;            // [B, G] i64
  Tensor mean, var;        // [B, G] f32
  cuda::DecodeNormArgs args;
};

struct CudaDecoder::Layer {
  NormState norm;
  CemaCoefficients cema;   // f32
  Tensor cema_h;           // [B, D, N, 2] f32
  Tensor rms_weight;       // [D] f32, undefined without norm_affine
  Tensor wz, wr, wh1, wv, wh2;  // compute dtype
  Tensor bz, br, bh1, bv;       // f32
  Tensor qk_scale, qk_offset;   // [2, Z] f32: (gamma + 1)/sqrt(dz) and beta
  Tensor keys, values;          // [B, c, H, dz] / [B, c, H, dv], compute dtype
  Tensor ln_weight, ln_bias;    // [D] f32, undefined without norm_affine
  Tensor fc_in;   // SwiGLU: [2F, D], rows fc1_0, fc3_0, fc1_1, fc3_1, ...; SiLU: fc1 [F, D]
  Tensor fc2;     // [D, F]
  Tensor alpha;   // [D] f32, undefined without rescale_nffn
  cuda::GemvLaunch projections, attention_out, ffn_in, ffn_out;
  cuda::DecodeAttentionArgs attention;
};

namespace {

// The decoder's own contiguous copy of `t` in `dtype` on `device`: the model may later move or change
// its parameters, while the captured graph keeps reading these addresses.
Tensor owned(const Tensor& t, DType dtype, const Device& device) {
  Tensor out = Tensor::empty(t.shape(), dtype, device);
  copy_(out, t.detach());
  return out;
}

template <class T>
T* pointer(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

Tensor host_counts(const Tensor& count) { return to(count, Device::cpu()); }

}  // namespace

CudaDecoder::CudaDecoder(const Megalodon& model, int64_t batch, DType compute_dtype, const DecoderOptions& options)
    : config_(model.config()), batch_(batch), dtype_(compute_dtype), device_(options.device) {
  MGL_CHECK(device_.is_cuda(), "CudaDecoder: decodes on a CUDA device, got ", device_.str());
  require_cuda(device_, "CudaDecoder");
  MGL_CHECK(batch >= 1, "CudaDecoder: batch must be positive, got ", batch);
  MGL_CHECK(compute_dtype == DType::f32 || compute_dtype == DType::bf16,
            "CudaDecoder: the compute dtype is f32 or bf16, got ", dtype_name(compute_dtype));
  NoGradGuard no_grad;
  DeviceGuard guard(device_);
  const MegalodonConfig& c = config_;
  const int64_t B = batch, D = c.model_dim, Z = c.z_dim, V = c.value_dim, F = c.ffn_hidden_dim;
  const int64_t H = c.num_heads, dz = c.head_z_dim(), dv = c.head_value_dim(), G = c.norm_num_groups;
  const int64_t N = c.cema_ndim, chunk = c.chunk_size, vocab = c.vocab_size;
  const float eps = static_cast<float>(c.norm_eps);
  // The weights come from the model's modules (typed accessors), so a renamed module is a compile
  // error here, not a missing name at run time.
  MGL_CHECK(!model.tensor_parallel().split(), "CudaDecoder: decodes a whole model; gather a tensor-parallel one first ",
            "(nn::gather_whole_model)");
  auto weight = [&](const Tensor& t) { return owned(t, dtype_, device_); };
  auto vector = [&](const Tensor& t) { return owned(t, DType::f32, device_); };
  auto activation = [&](const Shape& shape) { return Tensor::zeros(shape, DType::f32, device_); };

  x_ = activation({B, D}), t_ = activation({B, D}), u_ = activation({B, D}), h1_ = activation({B, D});
  y_hat_ = activation({B, D}), z_ = activation({B, Z}), r_ = activation({B, V}), v_ = activation({B, V});
  a_ = activation({B, V}), g_ = activation({B, F}), logits_ = activation({B, vocab});
  const int64_t splits = cuda::decode_attention_splits(chunk), groups = cuda::decode_attention_groups(dv);
  partial_ = activation({splits, B, H, dv});
  split_stats_ = activation({splits, B, H, groups, 2});
  std::vector<float> frequencies(dz / 2);
  for (int64_t i = 0; i < dz / 2; ++i) frequencies[i] = rope_frequency<float>(i, dz, c.rope_base);
  rope_frequencies_ = to(Tensor::from_vector(frequencies, {dz / 2}), device_);
  ids_ = Tensor::zeros({B}, DType::i64, device_);
  position_device_ = Tensor::zeros({1}, DType::i32, device_);

  embed_ = weight(model.embedding().weight());
  head_ = model.head() ? weight(model.head()->weight()) : embed_;
  embed_scale_ = c.scale_embedding ? static_cast<float>(std::sqrt(double(D))) : 1.0f;

  auto make_norm = [&](const TimestepNorm& norm, NormState& n) {
    n.weight = vector(norm.weight());
    n.bias = vector(norm.bias());
    n.count = Tensor::zeros({B, G}, DType::i64, device_);
    n.mean = activation({B, G});
    n.var = activation({B, G});
    n.args.batch = B, n.args.dim = D, n.args.groups = G, n.args.eps = eps;
    n.args.x = x_.data<float>();
    n.args.weight = n.weight.data<float>(), n.args.bias = n.bias.data<float>();
    n.args.count = n.count.data<int64_t>(), n.args.mean = n.mean.data<float>(), n.args.var = n.var.data<float>();
    n.args.y = t_.data<float>();
  };

  layers_.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    Layer& L = layers_[i];
    const MovingAverageGatedAttention& mega = model.block(i).mega();
    const NormalizedFeedForward& nffn = model.block(i).nffn();
    make_norm(mega.timenorm(), L.norm);
    const Cema& cema = mega.cema();
    L.cema = cema_coefficients(vector(cema.alpha()), vector(cema.delta()), vector(cema.theta()), vector(cema.gamma()),
                               vector(cema.omega()));
    L.cema_h = activation({B, D, N, 2});
    L.norm.args.modes = N;
    L.norm.args.cema = {L.cema.p.data<float>(), reinterpret_cast<const Complex<float>*>(L.cema.q.data<float>()),
                        reinterpret_cast<const Complex<float>*>(L.cema.log_q.data<float>()),
                        reinterpret_cast<const Complex<float>*>(L.cema.gamma.data<float>()), L.cema.omega.data<float>()};
    L.norm.args.cema_h = reinterpret_cast<Complex<float>*>(L.cema_h.data<float>());
    L.norm.args.cema_y = u_.data<float>();

    if (c.norm_affine) L.rms_weight = vector(mega.rmsnorm_weight());
    L.wz = weight(mega.wz().weight()), L.bz = vector(mega.wz().bias());
    L.wr = weight(mega.wr().weight()), L.br = vector(mega.wr().bias());
    L.wh1 = weight(mega.wh1().weight()), L.bh1 = vector(mega.wh1().bias());
    L.wv = weight(mega.wv().weight()), L.bv = vector(mega.wv().bias());
    L.wh2 = weight(mega.wh2().weight());
    L.qk_scale = contiguous(mul(add(vector(mega.gamma()), 1.0), 1.0 / std::sqrt(double(dz))));
    L.qk_offset = vector(mega.beta());
    L.keys = Tensor::zeros({B, chunk, H, dz}, dtype_, device_);
    L.values = Tensor::zeros({B, chunk, H, dv}, dtype_, device_);
    if (c.norm_affine) L.ln_weight = vector(nffn.norm_weight()), L.ln_bias = vector(nffn.norm_bias());
    // SwiGLU: fc1 and fc3 interleaved row by row, so that one warp of the product holds both halves
    // of an output (decode_gemv's swiglu_pairs).
    L.fc_in = nffn.fc3() ? contiguous(reshape(stack({weight(nffn.fc1().weight()), weight(nffn.fc3()->weight())}, 1), {2 * F, D}))
                         : weight(nffn.fc1().weight());
    L.fc2 = weight(nffn.fc2().weight());
    if (c.rescale_nffn) L.alpha = vector(nffn.alpha());

    // 2. The projections: three of RMSNorm(U) (the norm applied on the fly) and one of T.
    cuda::GemvLaunch& p = L.projections;
    p.dtype = dtype_, p.batch = B, p.count = 4;
    auto from_m = [&](cuda::GemvProblem& q, const Tensor& w, const Tensor& b, const Tensor& y) {
      q.weight = w.raw_data(), q.rows = w.size(0), q.cols = w.size(1);
      q.x = u_.data<float>(), q.norm = cuda::GemvNorm::rms, q.norm_weight = pointer<float>(L.rms_weight), q.eps = eps;
      q.bias = b.data<float>(), q.y = y.data<float>(), q.y_ld = y.size(1);
    };
    from_m(p.problems[0], L.wz, L.bz, z_);
    from_m(p.problems[1], L.wr, L.br, r_);
    p.problems[1].activation = cuda::GemvActivation::silu;
    from_m(p.problems[2], L.wh1, L.bh1, h1_);
    cuda::GemvProblem& pv = p.problems[3];
    pv.weight = L.wv.raw_data(), pv.rows = V, pv.cols = D, pv.x = t_.data<float>(), pv.bias = L.bv.data<float>();
    pv.activation = cuda::GemvActivation::silu, pv.y = v_.data<float>(), pv.y_ld = V;

    // 3. Attention over the chunk.
    cuda::DecodeAttentionArgs& at = L.attention;
    at.batch = B, at.heads = H, at.dz = dz, at.dv = dv, at.chunk_size = chunk, at.rope_base = c.rope_base, at.eps = eps;
    at.dtype = dtype_, at.position = position_device_.data<int32_t>();
    at.z = z_.data<float>(), at.z_ld = Z, at.qk_scale = L.qk_scale.data<float>(), at.qk_offset = L.qk_offset.data<float>();
    at.v = v_.data<float>(), at.v_ld = V, at.gate = r_.data<float>(), at.gate_ld = V;
    at.keys = L.keys.raw_data(), at.values = L.values.raw_data();
    at.rope_frequencies = rope_frequencies_.data<float>();
    at.partial = partial_.data<float>(), at.split_stats = split_stats_.data<float>(), at.out = a_.data<float>();

    // 4. Ŷ = A Wh2ᵀ + H1 + X.
    cuda::GemvLaunch& o = L.attention_out;
    o.dtype = dtype_, o.batch = B, o.count = 1;
    cuda::GemvProblem& po = o.problems[0];
    po.weight = L.wh2.raw_data(), po.rows = D, po.cols = V, po.x = a_.data<float>();
    po.residual = h1_.data<float>(), po.residual_ld = D, po.residual2 = x_.data<float>(), po.residual2_ld = D;
    po.y = y_hat_.data<float>(), po.y_ld = D;

    // 5. G = swiglu or silu of LayerNorm(Ŷ) (the norm applied on the fly).
    cuda::GemvLaunch& fi = L.ffn_in;
    fi.dtype = dtype_, fi.batch = B, fi.count = 1;
    cuda::GemvProblem& pi = fi.problems[0];
    pi.weight = L.fc_in.raw_data(), pi.rows = L.fc_in.size(0), pi.cols = D, pi.x = y_hat_.data<float>();
    pi.norm = cuda::GemvNorm::layer, pi.norm_weight = pointer<float>(L.ln_weight), pi.norm_bias = pointer<float>(L.ln_bias);
    pi.eps = eps, pi.activation = c.swiglu ? cuda::GemvActivation::swiglu_pairs : cuda::GemvActivation::silu;
    pi.y = g_.data<float>(), pi.y_ld = F;

    // 6. X = alpha ⊙ (G fc2ᵀ) + X, in place.
    cuda::GemvLaunch& fo = L.ffn_out;
    fo.dtype = dtype_, fo.batch = B, fo.count = 1;
    cuda::GemvProblem& pf = fo.problems[0];
    pf.weight = L.fc2.raw_data(), pf.rows = D, pf.cols = F, pf.x = g_.data<float>(), pf.row_scale = pointer<float>(L.alpha);
    pf.residual = x_.data<float>(), pf.residual_ld = D, pf.y = x_.data<float>(), pf.y_ld = D;
  }
  final_norm_ = std::make_unique<NormState>();
  make_norm(model.final_norm(), *final_norm_);

  reset();
  use_graph_ = options.use_graph;
  capture();
}

CudaDecoder::~CudaDecoder() {
#ifdef MGL_WITH_CUDA
  cuda::destroy_graph(graph_);
  cuda::destroy_host_mirror(ids_mirror_);
#endif
}

void CudaDecoder::capture() {
  if (!use_graph_) return;
  MGL_ON_CUDA({
    cuda::destroy_graph(graph_);
    graph_ = nullptr;
    graph_ = cuda::capture_graph(compute_stream(device_), [this] { record_step(); });
  });
}

void CudaDecoder::select_greedily(double repetition_penalty, int64_t choices, const std::vector<std::vector<int32_t>>& seen) {
  const int64_t vocab = config_.vocab_size;
  MGL_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0,
            "CudaDecoder::select_greedily: the repetition penalty must be > 0, got ", repetition_penalty);
  MGL_CHECK(choices >= 0 && choices <= vocab, "CudaDecoder::select_greedily: choices must be in [0, ", vocab,
            "], got ", choices);
  MGL_CHECK(static_cast<int64_t>(seen.size()) == batch_, "CudaDecoder::select_greedily: seen ids for ", seen.size(),
            " sequences, the batch is ", batch_);
  std::vector<int32_t> marks(static_cast<size_t>(batch_ * vocab), 0);
  for (int64_t b = 0; b < batch_; ++b)
    for (int32_t id : seen[b]) {
      MGL_CHECK(id >= 0 && id < vocab, "CudaDecoder::select_greedily: seen id ", id, " of sequence ", b,
                " is outside the vocabulary [0, ", vocab, ")");
      marks[b * vocab + id] = 1;
    }
  DeviceGuard guard(device_);
  repetition_penalty_ = repetition_penalty;
  choices_ = choices == 0 ? vocab : choices;
  if (!seen_.defined()) seen_ = Tensor::empty({batch_, vocab}, DType::i32, device_);
  copy_(seen_, Tensor::from_vector(marks, {batch_, vocab}));
  synchronize(device_);  // the host marks must outlive the copy; no replay may be running
  capture();
}

void CudaDecoder::copy_ids_to_host() {
  DeviceGuard guard(device_);
  MGL_ON_CUDA({
    if (!ids_mirror_) ids_mirror_ = cuda::create_host_mirror(batch_ * sizeof(int64_t));
    cuda::mirror_async(ids_mirror_, ids_.raw_data(), compute_stream(device_));
  });
}

std::vector<int64_t> CudaDecoder::ids_on_host() const {
  MGL_CHECK(ids_mirror_ != nullptr, "CudaDecoder::ids_on_host: no copy_ids_to_host() before");
  std::vector<int64_t> ids(batch_);
  MGL_ON_CUDA({
    const auto* host = static_cast<const int64_t*>(cuda::wait_for_mirror(ids_mirror_));
    std::copy(host, host + batch_, ids.begin());
  });
  return ids;
}

void CudaDecoder::record_step() const {
  [[maybe_unused]] const Stream stream = compute_stream(device_);
  [[maybe_unused]] const MegalodonConfig& c = config_;
  MGL_ON_CUDA({
    cuda::DecodeEmbedArgs embed;
    embed.batch = batch_;
    embed.vocab = c.vocab_size;
    embed.dim = c.model_dim;
    embed.dtype = dtype_;
    embed.table = embed_.raw_data();
    embed.scale = embed_scale_;
    embed.ids = ids_.data<int64_t>();
    embed.x = x_.data<float>();
    cuda::decode_embed(embed, stream);
    for (const Layer& L : layers_)
      for (const Launch kind : kLaunches)
        if (kind != Launch::head) record_launch(L, kind);
    record_head();
    if (selects_greedily()) {
      cuda::DecodeGreedyArgs greedy;
      greedy.batch = batch_;
      greedy.vocab = c.vocab_size;
      greedy.choices = choices_;
      greedy.logits = logits_.data<float>();
      greedy.repetition_penalty = repetition_penalty_;
      greedy.seen = seen_.data<int32_t>();
      greedy.ids = ids_.data<int64_t>();
      cuda::decode_greedy(greedy, stream);
    }
    cuda::DecodeAdvanceArgs advance;
    advance.chunk_size = c.chunk_size;
    advance.position = position_device_.data<int32_t>();
    cuda::decode_advance(advance, stream);
  });
}

void CudaDecoder::record_launch(const Layer& L, Launch kind) const {
  [[maybe_unused]] const Stream stream = compute_stream(device_);
  MGL_ON_CUDA({
    switch (kind) {
      case Launch::norm_cema: cuda::decode_timestep_norm(L.norm.args, stream); break;
      case Launch::projections: cuda::decode_gemv(L.projections, stream); break;
      case Launch::attention: cuda::decode_attention(L.attention, stream); break;
      case Launch::attention_out: cuda::decode_gemv(L.attention_out, stream); break;
      case Launch::ffn_in: cuda::decode_gemv(L.ffn_in, stream); break;
      case Launch::ffn_out: cuda::decode_gemv(L.ffn_out, stream); break;
      case Launch::head: MGL_FAIL("CudaDecoder: the LM head is not a per-layer launch");
    }
  });
}

void CudaDecoder::record_head() const {
  [[maybe_unused]] const Stream stream = compute_stream(device_);
  MGL_ON_CUDA({
    cuda::decode_timestep_norm(final_norm_->args, stream);
    cuda::GemvLaunch head;
    head.dtype = dtype_, head.batch = batch_, head.count = 1;
    cuda::GemvProblem& h = head.problems[0];
    h.weight = head_.raw_data(), h.rows = config_.vocab_size, h.cols = config_.model_dim, h.x = t_.data<float>();
    h.y = logits_.data<float>(), h.y_ld = config_.vocab_size;
    cuda::decode_gemv(head, stream);
  });
}

const char* CudaDecoder::launch_name(Launch kind) {
  switch (kind) {
    case Launch::norm_cema: return "TimestepNorm + CEMA";
    case Launch::projections: return "projections Z, R, H1, V";
    case Launch::attention: return "attention";
    case Launch::attention_out: return "attention output Wh2";
    case Launch::ffn_in: return "FFN in (LayerNorm, fc1)";
    case Launch::ffn_out: return "FFN out (fc2, residual)";
    case Launch::head: return "final norm + LM head";
  }
  return "?";
}

void CudaDecoder::record_launches(Launch kind) const {
  if (kind == Launch::head) return record_head();
  for (const Layer& L : layers_) record_launch(L, kind);
}

const Tensor& CudaDecoder::step() {
  DeviceGuard guard(device_);
  if (graph_) {
    MGL_ON_CUDA(cuda::launch_graph(graph_, compute_stream(device_)));
  } else {
    record_step();
  }
  position_ = (position_ + 1) % config_.chunk_size;
  return logits_;
}

const Tensor& CudaDecoder::step(const Tensor& ids) {
  MGL_CHECK(ids.defined() && ids.dtype() == DType::i64 && ids.shape() == Shape{batch_} && ids.is_contiguous(),
            "CudaDecoder::step: expected contiguous i64 ids [", batch_, "], got ",
            ids.defined() ? ids.describe() : std::string("an undefined tensor"));
  MGL_CHECK(ids.is_cpu() || ids.device() == device_, "CudaDecoder::step: ids on ", ids.device().str(),
            ", the decoder on ", device_.str());
  if (ids.is_cpu()) {
    const int64_t* values = ids.data<int64_t>();
    for (int64_t b = 0; b < batch_; ++b)
      MGL_CHECK(values[b] >= 0 && values[b] < config_.vocab_size, "CudaDecoder::step: token id ", values[b],
                " outside the vocabulary [0, ", config_.vocab_size, ")");
  }
  DeviceGuard guard(device_);
  MGL_ON_CUDA(cuda::copy_async(ids_.raw_data(), ids.raw_data(), batch_ * sizeof(int64_t), compute_stream(device_)));
  return step();
}

void CudaDecoder::reset() {
  for (Layer& L : layers_) {
    import_norm(L.norm, TimestepNormState{});
    fill_(L.cema_h, 0.0);
  }
  import_norm(*final_norm_, TimestepNormState{});
  fill_(position_device_, 0.0);
  position_ = 0;
}

void CudaDecoder::import_norm(NormState& norm, const TimestepNormState& state) {
  const int64_t B = batch_, G = config_.norm_num_groups;
  if (!state.count.defined()) {  // the prior every sequence starts from; with count 0 it has no effect
    constexpr RunningMoments<double> prior = timestep_norm_prior<double>();
    fill_(norm.count, static_cast<double>(prior.count));
    fill_(norm.mean, prior.mean);
    fill_(norm.var, prior.var);
    return;
  }
  MGL_CHECK(state.count.shape() == Shape{B} && state.mean.shape() == Shape({B, G}) && state.var.shape() == Shape({B, G}),
            "CudaDecoder::import_state: TimestepNorm state count ", state.count.describe(), ", mean ",
            state.mean.describe(), ", var ", state.var.describe(), " do not fit batch ", B, " and ", G, " groups");
  const std::vector<int64_t> counts = host_counts(state.count).to_vector<int64_t>();
  std::vector<int64_t> per_group(B * G);
  for (int64_t i = 0; i < B * G; ++i) per_group[i] = counts[i / G];
  copy_(norm.count, Tensor::from_vector(per_group, {B, G}));
  copy_(norm.mean, state.mean.detach());
  copy_(norm.var, state.var.detach());
}

void CudaDecoder::import_state(const ModelState& state) {
  NoGradGuard no_grad;
  DeviceGuard guard(device_);
  if (state.empty()) return reset();
  const MegalodonConfig& c = config_;
  const int64_t B = batch_, D = c.model_dim, N = c.cema_ndim, H = c.num_heads, chunk = c.chunk_size;
  MGL_CHECK(static_cast<int64_t>(state.layers.size()) == c.num_layers, "CudaDecoder::import_state: ",
            state.layers.size(), " layers, the model has ", c.num_layers);
  const int64_t m = state.layers[0].cached_tokens();
  MGL_CHECK(m < chunk, "CudaDecoder::import_state: ", m, " cached tokens, a chunk holds ", chunk);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const LayerState& s = state.layers[i];
    Layer& L = layers_[i];
    MGL_CHECK(s.cached_tokens() == m, "CudaDecoder::import_state: layer ", i, " caches ", s.cached_tokens(),
              " tokens, layer 0 ", m);
    import_norm(L.norm, s.norm);
    if (s.cema.defined()) {
      MGL_CHECK(s.cema.shape() == Shape({B, D, N, 2}), "CudaDecoder::import_state: layer ", i, " CEMA state ",
                s.cema.describe(), ", expected [", B, ", ", D, ", ", N, ", 2]");
      copy_(L.cema_h, s.cema.detach());
    } else {
      fill_(L.cema_h, 0.0);
    }
    if (m == 0) continue;
    const Shape key_shape{B, m, H, c.head_z_dim()}, value_shape{B, m, H, c.head_value_dim()};
    MGL_CHECK(s.keys.shape() == key_shape && s.values.defined() && s.values.shape() == value_shape,
              "CudaDecoder::import_state: layer ", i, " keys ", s.keys.describe(), " and values ",
              s.values.defined() ? s.values.describe() : std::string("(none)"), ", expected ", shape_str(key_shape),
              " and ", shape_str(value_shape));
    copy_(slice(L.keys, 1, 0, m), s.keys.detach());
    copy_(slice(L.values, 1, 0, m), s.values.detach());
  }
  import_norm(*final_norm_, state.final_norm);
  copy_(position_device_, Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(m)}, {1}));
  position_ = m;
  synchronize(device_);  // the host buffers above must outlive the copies
}

TimestepNormState CudaDecoder::export_norm(const NormState& norm) const {
  const int64_t B = batch_, G = config_.norm_num_groups;
  const std::vector<int64_t> per_group = host_counts(norm.count).to_vector<int64_t>();
  std::vector<int64_t> counts(B);
  for (int64_t b = 0; b < B; ++b) counts[b] = per_group[b * G];
  return {Tensor::from_vector(counts, {B}, DType::i64, device_), owned(norm.mean, DType::f32, device_),
          owned(norm.var, DType::f32, device_)};
}

ModelState CudaDecoder::export_state() const {
  NoGradGuard no_grad;
  DeviceGuard guard(device_);
  ModelState state;
  state.layers.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    LayerState& s = state.layers[i];
    s.norm = export_norm(L.norm);
    s.cema = owned(L.cema_h, DType::f32, device_);
    if (position_ > 0) {
      s.keys = owned(slice(L.keys, 1, 0, position_), dtype_, device_);
      s.values = owned(slice(L.values, 1, 0, position_), dtype_, device_);
    }
  }
  state.final_norm = export_norm(*final_norm_);
  synchronize(device_);
  return state;
}

}  // namespace mgl::nn

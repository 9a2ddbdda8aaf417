// Chunk parallelism of the MEGALODON model (nn/chunk_parallel.h), under mpirun with 2 and 4 ranks, all
// ranks in one chunk group: each rank runs its piece of the sequences and must reproduce, in f64, the
// single-process forward over the whole sequences (which every rank also computes, as the reference),
// with and without activation recomputation on the chunk-parallel side:
//   * its logits;
//   * the state it receives at its boundary (every block's norm and CEMA state, the final norm's);
//   * the gradient it sends back for that state, against the gradient of the whole loss with respect
//     to the state at that position in the single process;
//   * every parameter's gradient, summed over the ranks.
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "dist/communicator_suite.h"
#include "dist/mpi_world.h"
#include "nn/chunk_parallel.h"
#include "nn/megalodon_models.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

std::vector<Tensor> gradients(const nn::Module& model) {
  std::vector<Tensor> out;
  for (const nn::Parameter& p : model.named_parameters()) {
    const Tensor g = Tensor::empty(p.tensor.shape(), p.tensor.dtype());
    copy_(g, p.tensor.grad());
    out.push_back(g);
  }
  return out;
}

Tensor leaf_copy(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  copy_(out, t);
  return out.set_requires_grad(true);
}

}  // namespace

// One chunk-parallel step against the single process, with or without activation recomputation in the
// chunk-parallel model (the reference stores its activations; recomputation is bitwise the same).
static void check_chunk_parallel_step(bool recompute) {
  dist::ParallelOptions o;
  const int cp = dist::initialize_mpi().size;
  o.sizes = {1, cp, 1};
  o.timeout_s = 120;
  const auto ps = dist::ParallelState::create(o, "cpu");
  const int r = static_cast<int>(ps->coordinates().chunk);
  const uint64_t seed = shared_seed(ps->world());
  INFO("seed " << seed << ", chunk rank " << r << " of " << cp);

  nn::MegalodonConfig config = nn::MegalodonConfig::preset("test");
  const auto model = f64_model(config, seed);
  nn::MegalodonConfig recomputing = config;
  recomputing.activation_checkpointing = recompute;
  const auto cp_model = f64_model(recomputing, seed);  // the same parameters (the same seeds)
  const int64_t B = 2, piece = 2 * config.chunk_size, L = cp * piece, layers = config.num_layers;
  const Tensor tokens = random_ids({B, L + 1}, config.vocab_size, seed + 7);
  const Tensor ids = contiguous(slice(tokens, 1, 0, L)), targets = contiguous(slice(tokens, 1, 1, L + 1));
  auto columns = [](const Tensor& t, int64_t a, int64_t b) { return contiguous(slice(t, 1, a, b)); };

  // The single process: the whole sequences.
  const Tensor logits_ref = model->forward(ids);
  backward(nn::Megalodon::loss(logits_ref, targets));
  const std::vector<Tensor> grads_ref = gradients(*model);
  model->zero_grad();

  // The single process's state at this rank's boundary, and the gradient of the whole loss with respect
  // to it: the prefix's state made a leaf, the rest of the sequences run from it.
  std::vector<Tensor> state_ref, state_grad_ref;
  if (r > 0) {
    nn::ModelState prefix;
    {
      NoGradGuard no_grad;
      model->forward(columns(ids, 0, r * piece), nullptr, &prefix);
    }
    for (nn::LayerState& s : prefix.layers) {
      s.norm.mean = leaf_copy(s.norm.mean), s.norm.var = leaf_copy(s.norm.var), s.cema = leaf_copy(s.cema);
      CHECK(!s.keys.defined());  // the boundary is a chunk boundary: no partial chunk is cached
    }
    prefix.final_norm.mean = leaf_copy(prefix.final_norm.mean), prefix.final_norm.var = leaf_copy(prefix.final_norm.var);
    const Tensor rest = model->forward(columns(ids, r * piece, L), &prefix, nullptr);
    const double share = double(L - r * piece) / double(L);  // the rest's tokens in the whole mean
    backward(mul(nn::Megalodon::loss(rest, columns(targets, r * piece, L)), share));
    for (int64_t i = 0; i <= layers; ++i) {
      const nn::LayerState& s = i < layers ? prefix.layers[i] : nn::LayerState{prefix.final_norm, {}, {}, {}};
      state_ref.push_back(nn::flatten_layer_state(s, i < layers).detach());
      std::vector<Tensor> g = {reshape(s.norm.mean.grad(), {-1}), reshape(s.norm.var.grad(), {-1})};
      if (i < layers) g.push_back(reshape(s.cema.grad(), {-1}));
      state_grad_ref.push_back(concat(g, 0));
    }
    model->zero_grad();
  }

  // This rank's piece, the state passed along the chunk group.
  nn::ChunkRelay relay(*ps, B, piece, config.model_dim, config.norm_num_groups, config.cema_ndim, DType::f64,
                       Device::cpu());
  const Tensor logits = cp_model->forward(columns(ids, r * piece, (r + 1) * piece), relay);
  CHECK(relative_error(logits, columns(logits_ref, r * piece, (r + 1) * piece)) <= 1e-12);
  std::vector<Tensor> sent_back(relay.received().size());
  for (size_t i = 0; i < relay.received().size(); ++i)
    autograd::register_hook(relay.received()[i], [&sent_back, i](const Tensor& g) {
      sent_back[i] = g;
      return g;
    });
  backward(mul(nn::Megalodon::loss(logits, columns(targets, r * piece, (r + 1) * piece)), 1.0 / cp));
  relay.finish();

  REQUIRE(relay.received().size() == (r > 0 ? static_cast<size_t>(layers + 1) : 0u));
  for (size_t i = 0; i < relay.received().size(); ++i) {
    INFO("state of " << (static_cast<int64_t>(i) < layers ? "block " + std::to_string(i) : std::string("the final norm")));
    CHECK(relative_error(relay.received()[i].detach(), state_ref[i]) <= 1e-12);
    REQUIRE(sent_back[i].defined());
    CHECK(relative_error(sent_back[i], state_grad_ref[i]) <= 1e-10);
  }
  // Parameters are replicated over the chunk group: their gradients sum there.
  const std::vector<nn::Parameter> params = cp_model->named_parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    INFO(params[k].name);
    const Tensor g = leaf_copy(params[k].tensor.grad()).detach();
    ps->chunk().on(Device::cpu()).all_reduce(g, dist::ReduceOp::sum)->wait();
    CHECK(relative_error(g, grads_ref[k]) <= 1e-10);
  }
}

TEST_CASE("chunk-parallel forward and backward equal the single-process run") { check_chunk_parallel_step(false); }

TEST_CASE("chunk-parallel with activation recomputation equals the single-process run") {
  check_chunk_parallel_step(true);
}

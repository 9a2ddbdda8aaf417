// Tensor parallelism of the MEGALODON model (nn/tensor_parallel.h) under mpirun with 2 and 4 ranks, in
// f64 on the CPU: the model split over every rank of the job computes the single-process model, which
// every rank also holds whole with the same parameters: logits (whole, or this rank's vocabulary slice),
// loss and each parameter's gradient (this rank's piece of the single-process gradient); replicated
// parameters get the same gradient on every rank; gathered back, the model is the whole one; the global gradient norm counts each parameter once;
// and directional derivatives by central differences, every rank moving its piece of one global
// direction, match the gradients (a gradient check through the communication); a checkpoint of the
// split model and its AdamW state holds the whole tensors, bitwise those one process saves.
#include <cmath>
#include <filesystem>

#include "autograd/engine.h"
#include "dist/communicator_suite.h"
#include "dist/directional_check.h"
#include "dist/mpi_world.h"
#include "nn/checkpoint.h"
#include "nn/grad_clip.h"
#include "nn/hdf5_file.h"
#include "nn/megalodon_models.h"
#include "nn/tensor_parallel.h"
#include "support/errors.h"
#include "support/scratch.h"

using namespace mgl;
using namespace mgl::testing;

namespace {

std::shared_ptr<dist::ParallelState> tensor_group_of_world() {
  dist::ParallelOptions o;
  o.sizes = {1, 1, dist::initialize_mpi().size};
  o.timeout_s = 120;
  return dist::ParallelState::create(o, "cpu");
}

// The small test model with every size divisible over 4 ranks: 4 heads (dz 8, dv 12), G 8, F 96, a
// vocabulary of 300; two chunks of 16 per sequence, SwiGLU, every norm affine.
nn::MegalodonConfig split_config(bool tied, bool recompute) {
  nn::MegalodonConfig c = small_config();
  c.num_heads = 4;
  c.vocab_size = 300;
  c.share_embedding = tied;
  c.scale_embedding = tied;
  c.activation_checkpointing = recompute;
  return c;
}

// The model split over `tp` holding this rank's pieces of `whole`'s parameters.
std::unique_ptr<nn::Megalodon> split_model(const nn::Megalodon& whole, const nn::TensorParallel& tp) {
  Generator gen(1);
  const auto source = whole.named_parameters();
  nn::InitOptions options = f64_options(gen);
  options.dtype = source.front().tensor.dtype();
  auto model = std::make_unique<nn::Megalodon>(whole.config(), options, tp);
  model->set_compute_dtype(whole.compute_dtype());
  NoGradGuard no_grad;
  const auto target = model->named_parameters();
  REQUIRE(source.size() == target.size());
  for (size_t i = 0; i < source.size(); ++i) {
    REQUIRE(source[i].name == target[i].name);
    copy_(target[i].tensor, piece_of(source[i].tensor, source[i].sharding, tp.rank(), tp.size()));
  }
  return model;
}

struct Batch {
  Tensor ids, targets;
};

Batch random_batch(const nn::MegalodonConfig& c, uint64_t seed) {
  return {random_ids({2, 2 * c.chunk_size}, c.vocab_size, seed), random_ids({2, 2 * c.chunk_size}, c.vocab_size, seed + 1)};
}

}  // namespace

TEST_CASE("a model split over the tensor group computes the single-process forward and backward", "[nn][tp][mpi]") {
  const auto ps = tensor_group_of_world();
  const nn::TensorParallel tp(ps->tensor());
  const uint64_t seed = shared_seed(ps->world());
  for (const bool tied : {false, true}) {
    for (const bool recompute : {false, true}) {
      INFO("seed " << seed << ", rank " << tp.rank() << " of " << tp.size() << (tied ? ", tied head" : ", vocabulary-split head")
                   << (recompute ? ", recomputed blocks" : ""));
      const nn::MegalodonConfig config = split_config(tied, recompute);
      const auto whole = f64_model(config, seed);
      const auto split = split_model(*whole, tp);
      CHECK(split->vocabulary_split() == !tied);
      const Batch batch = random_batch(config, seed + 7);

      const Tensor logits_ref = whole->forward(batch.ids);
      const Tensor loss_ref = nn::Megalodon::loss(logits_ref, batch.targets);
      backward(mul(loss_ref, 0.5));
      const Tensor logits = split->forward(batch.ids);
      const Tensor loss = split->token_loss(logits, batch.targets);
      backward(mul(loss, 0.5));

      // The vocabulary-split head returns this rank's columns of the logits.
      const Tensor expected_logits = tied ? logits_ref : piece_of(logits_ref, nn::Sharding{2}, tp.rank(), tp.size());
      REQUIRE(logits.shape() == expected_logits.shape());
      CHECK(relative_error(logits, expected_logits) <= 1e-12);
      CHECK(std::abs(loss.item() - loss_ref.item()) <= 1e-12 * std::abs(loss_ref.item()));

      const auto reference = whole->named_parameters();
      const auto mine = split->named_parameters();
      for (size_t i = 0; i < mine.size(); ++i) {
        INFO(mine[i].name);
        const Tensor expected = piece_of(reference[i].tensor.grad(), reference[i].sharding, tp.rank(), tp.size());
        REQUIRE(mine[i].tensor.grad().defined());
        REQUIRE(mine[i].tensor.grad().shape() == expected.shape());
        CHECK(relative_error(mine[i].tensor.grad(), expected) <= 1e-10);
        if (mine[i].sharding.replicated()) {
          // Every rank holds the same gradient of a replicated parameter: compare with rank 0's.
          const Tensor first = Tensor::empty(mine[i].tensor.grad().shape(), DType::f64);
          copy_(first, mine[i].tensor.grad());
          ps->tensor().on(Device::cpu()).broadcast(first, 0)->wait();
          CHECK(relative_error(mine[i].tensor.grad(), first) == 0.0);
        }
      }

      // Gathered back, the split model is the whole one, parameters bit for bit.
      const auto gathered = nn::gather_whole_model(std::shared_ptr<nn::Megalodon>(split.get(), [](nn::Megalodon*) {}));
      REQUIRE(!gathered->tensor_parallel().split());
      const auto whole_params = gathered->named_parameters();
      for (size_t i = 0; i < whole_params.size(); ++i) CHECK(relative_error(whole_params[i].tensor, reference[i].tensor) == 0.0);

      // The global norm of the split gradient is the single-process norm: each parameter counted once.
      const double norm = nn::grad_norm(mine, tp).norm, norm_ref = nn::grad_norm(reference).norm;
      CHECK(std::abs(norm - norm_ref) <= 1e-12 * norm_ref);
    }
  }
}

TEST_CASE("directional derivatives of the split model match its gradients", "[nn][tp][mpi]") {
  // A gradient check through every communication of the split model (tests/dist/directional_check.h).
  const auto ps = tensor_group_of_world();
  const nn::TensorParallel tp(ps->tensor());
  const uint64_t seed = shared_seed(ps->world());
  for (const bool tied : {false, true}) {
    INFO("seed " << seed << ", rank " << tp.rank() << (tied ? ", tied head" : ", vocabulary-split head"));
    const nn::MegalodonConfig config = split_config(tied, false);
    const auto split = split_model(*f64_model(config, seed), tp);
    const Batch batch = random_batch(config, seed + 11);
    std::vector<CheckedLeaf> leaves;
    for (const nn::Parameter& p : split->named_parameters()) leaves.push_back({p.tensor, p.sharding.replicated()});
    check_directional_derivatives(
        ps->tensor(), [&] { return split->token_loss(split->forward(batch.ids), batch.targets); }, leaves, seed);
  }
}

TEST_CASE("sizes that do not split over the tensor group are one error naming each", "[nn][tp][mpi]") {
  nn::MegalodonConfig c = split_config(false, false);
  c.num_heads = 2;
  c.vocab_size = 301;
  const std::string message = error_message([&] { nn::check_tensor_parallel_sizes(c, 4); });
  CHECK(contains(message, "parallel.tensor = 4 must divide"));
  CHECK(contains(message, "model.num_heads (H) = 2"));
  CHECK(contains(message, "model.vocab_size (untied head) = 301"));
  c.share_embedding = true;  // a tied head is split along D, not by vocabulary
  CHECK(!contains(error_message([&] { nn::check_tensor_parallel_sizes(c, 4); }), "vocab_size"));
  CHECK_NOTHROW(nn::check_tensor_parallel_sizes(split_config(false, false), 4));
}

TEST_CASE("a split model's checkpoint holds whole tensors, bitwise those one process saves", "[nn][tp][mpi]") {
  // The model and AdamW moments split over the group are saved (collective; rank 0 writes), and the same
  // values whole by one process: every stored tensor is bitwise the same, so generate or a run under any
  // grid loads either file alike; loading the split file into a fresh split model restores the pieces.
  const auto ps = tensor_group_of_world();
  const nn::TensorParallel tp(ps->tensor());
  const uint64_t seed = shared_seed(ps->world());
  const SharedScratch shared(ps, seed);
  const std::filesystem::path dir = shared("checkpoints");
  const nn::MegalodonConfig config = split_config(false, false);
  Generator init(seed);
  nn::InitOptions f32;
  f32.generator = &init;
  const auto whole = std::make_unique<nn::Megalodon>(config, f32);  // AdamW keeps f32 masters
  const auto split = split_model(*whole, tp);
  nn::AdamW whole_adam(whole->named_parameters()), split_adam(split->named_parameters());
  const auto whole_params = whole->named_parameters();
  for (size_t i = 0; i < whole_params.size(); ++i) {
    const nn::Parameter& p = whole_params[i];
    const Tensor m = random_tensor(p.tensor.shape(), seed + 2 * i, DType::f32);
    const Tensor v = random_tensor(p.tensor.shape(), seed + 2 * i + 1, DType::f32, 0.0, 1.0);
    whole_adam.set_state(i, 7, m, v);
    split_adam.set_state(i, 7, piece_of(m, p.sharding, tp.rank(), tp.size()), piece_of(v, p.sharding, tp.rank(), tp.size()));
  }
  nn::TrainingState state;
  state.step = 7;
  state.run_config = "{}";
  const std::string split_path = (dir / "split.h5").string(), whole_path = (dir / "whole.h5").string();
  nn::save_checkpoint(split_path, *split, split_adam, state);
  if (ps->world_rank() == 0) {
    nn::save_checkpoint(whole_path, *whole, whole_adam, state);
    const nn::Hdf5File a(split_path, nn::Hdf5File::Mode::read), b(whole_path, nn::Hdf5File::Mode::read);
    REQUIRE(a.dataset_names() == b.dataset_names());
    for (const std::string& name : a.dataset_names()) {
      if (name == "tokenizer/model") continue;
      INFO(name);
      const Tensor x = a.read(name), y = b.read(name);
      REQUIRE(x.shape() == y.shape());
      CHECK(x.to_vector<double>() == y.to_vector<double>());
    }
  }
  ps->world().on(Device::cpu()).barrier();

  nn::Megalodon restored(config, {}, tp);
  nn::AdamW restored_adam(restored.named_parameters());
  CHECK(nn::load_checkpoint(whole_path, restored, restored_adam).step == 7);
  const auto mine = split->named_parameters(), back = restored.named_parameters();
  for (size_t i = 0; i < mine.size(); ++i) {
    INFO(mine[i].name);
    CHECK(relative_error(back[i].tensor, mine[i].tensor) == 0.0);
    CHECK(relative_error(restored_adam.exp_avg(i), split_adam.exp_avg(i)) == 0.0);
    CHECK(relative_error(restored_adam.exp_avg_sq(i), split_adam.exp_avg_sq(i)) == 0.0);
  }
}

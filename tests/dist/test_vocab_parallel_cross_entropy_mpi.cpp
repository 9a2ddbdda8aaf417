// dist/vocab_parallel_cross_entropy.h on CPU tensors (run under mpirun with 2 and 4 ranks): the loss and
// each rank's gradient against the single-process cross_entropy (f64, f32 against f32, bf16 against
// f32), on the world as one tensor group, on two tensor groups side by side and on a group of one; every
// row ignored; a finite-difference gradient check through the communication; a bad target id.
#include "dist/mappings.h"
#include "dist/vocab_parallel_cross_entropy_suite.h"

using namespace mgl;
using namespace mgl::testing;

TEST_CASE("the loss and each rank's gradient equal the single-process cross_entropy's") {
  // f64: both sides differ only by the order of f64 roundings (1e-15 or so).
  // f32 against f32: unit roundoff u = 2^-24 ~ 6e-8, logits in [-1, 1), V = 5 TP <= 20. Per row, log S_r
  // gathers about 4 + TP roundings (the shift, exp, the sums on each rank and over the ranks, log) and
  // the target's shifted logit one; the single-process loss (f64 inside) one more: an absolute error
  // under 10u against a mean loss near log V ~ 3, so under 4u ~ 2.4e-7 relative. Each probability is
  // within about 20u (relative) of the reference's, and the probabilities carry at most half of the
  // gradient's norm (the -1 at each target carries the rest): under 10u ~ 6e-7 relative.
  // bf16 logits against f32: the gradient is rounded to bf16 (2^-9 ~ 2e-3 relative).
  run_vocab_parallel_suite("cpu", 9, 5, 1.0,
                           {{DType::f64, DType::f64, 1e-12},
                            {DType::f32, DType::f32, 1e-6},
                            {DType::bf16, DType::f32, 1e-2}});
}

TEST_CASE("a group of one is the single-process cross_entropy") {
  const auto solo = dist::ParallelState::single_process();
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  check_group(solo->tensor(), Device::cpu(), seed, 9, 5, 1.0, {{DType::f64, DType::f64, 1e-12}});
}

TEST_CASE("finite differences through the communication") {
  const auto ps = tensor_grid(1, "cpu");
  const dist::ProcessGroup& g = ps->tensor();
  const int w = g.size();
  const uint64_t seed = shared_seed(ps->world());
  INFO("seed " << seed);
  const int64_t rows = w + 3, cols = 3;
  const Tensor targets = spread_targets(rows, cols, w, seed + 1);
  // Every rank checks the gradient with respect to the whole logits, which every rank holds (the seed is
  // shared) and scatter_to_group slices. A perturbed element lies in one rank's slice, so the global
  // loss sees one perturbation at a time while the other ranks pass their slices unchanged; every rank
  // calls the function once per perturbation, and scatter_to_group's backward assembles the whole
  // gradient from the ranks' slices.
  check_gradients(
      [&](const std::vector<Tensor>& x) {
        return dist::vocab_parallel_cross_entropy(dist::scatter_to_group(x[0], g, 1), targets, g);
      },
      {random_tensor({rows, cols * w}, seed).set_requires_grad(true)});
}

TEST_CASE("a target id outside the full vocabulary is one clear error on every rank") {
  const auto ps = tensor_grid(1, "cpu");
  const dist::ProcessGroup& g = ps->tensor();
  const uint64_t seed = shared_seed(ps->world());
  const int64_t cols = 5, vocab = cols * g.size();
  const Tensor logits = random_tensor({3, cols}, seed + static_cast<uint64_t>(g.rank()));
  for (int64_t bad : {vocab, int64_t{-1}}) {
    const Tensor targets = Tensor::from_vector(std::vector<int64_t>{0, -100, bad}, {3});
    CHECK(contains(error_message([&] { dist::vocab_parallel_cross_entropy(logits, targets, g); }),
                   "vocab_parallel_cross_entropy: target id " + std::to_string(bad) + " at row 2 is outside [0, " +
                       std::to_string(vocab) + ")"));
  }
  // The check comes before any communication, so the ranks are still in step.
  const Tensor good = Tensor::from_vector(std::vector<int64_t>{0, -100, vocab - 1}, {3});
  CHECK(std::isfinite(dist::vocab_parallel_cross_entropy(logits, good, g).item()));
}

// train --init-from (TrainerOptions::init_from): a new run starts at step 0 from the given weights (a run
// directory, a safetensors export) with fresh optimizer state; a checkpoint to resume wins over them; weights
// of another architecture are an error naming the parameter.
#include <filesystem>

#include "apps/trainer_fixtures.h"
#include "nn/weights.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

void require_parameters_equal(const nn::Megalodon& model, const nn::Weights& weights) {
  const std::vector<nn::Parameter> parameters = model.named_parameters();
  REQUIRE(parameters.size() == weights.tensors.size());
  for (const auto& [name, tensor] : weights.tensors) {
    INFO(name);
    const auto it = std::find_if(parameters.begin(), parameters.end(),
                                 [&name = name](const auto& p) { return p.name == name; });
    REQUIRE(it != parameters.end());
    REQUIRE(it->tensor.to_vector<float>() == tensor.to_vector<float>());
  }
}

}  // namespace

TEST_CASE("trainer: --init-from starts a new run at step 0 from the given weights", "[apps][trainer]") {
  const fs::path dir = scratch("init_from");
  const PreparedData data = generated_sample(dir, 200'000);
  Trainer(options_for(small_run(3), data, dir / "base")).run();
  const nn::Weights trained = nn::read_weights((dir / "base").string());
  nn::write_weights_safetensors((dir / "base.safetensors").string(), trained);

  for (const fs::path& source : {dir / "base", dir / "base.safetensors"}) {
    INFO(source);
    TrainerOptions o = options_for(small_run(2), data, dir / ("tuned_" + source.filename().string()));
    o.init_from = source.string();
    Trainer tuned(o);
    CHECK(tuned.step() == 0);
    require_parameters_equal(tuned.model(), trained);
    const TrainingSummary s = tuned.run();
    CHECK(s.first_step == 0);
    CHECK(s.last_step == 2);
  }

  // Resuming the fine-tuning run continues its own checkpoint, not the initial weights.
  RunConfig longer = small_run(2);
  longer.train.steps = 4;
  TrainerOptions again = options_for(longer, data, dir / "tuned_base", /*resume=*/true);
  again.init_from = (dir / "base").string();
  Trainer resumed(again);
  CHECK(resumed.step() == 2);

  // Weights of another architecture.
  RunConfig deeper = small_run(2);
  deeper.model.num_layers = 3;
  TrainerOptions wrong = options_for(deeper, data, dir / "deeper");
  wrong.init_from = (dir / "base").string();
  CHECK(contains(error_message([&] { Trainer t(wrong); }), "layers.2"));
}

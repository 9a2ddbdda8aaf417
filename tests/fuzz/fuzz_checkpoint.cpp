// Fuzz target: the readers of stored weights (nn/hdf5_file.h, nn/checkpoint.h, nn/state_dict.h, nn/weights.h,
// nn/safetensors.h). The input is a file as `train --resume`, `generate --checkpoint` and `convert`/`train
// --init-from` meet it: a training checkpoint, an HDF5 weights file or a safetensors file. It is read each of
// those ways: read_weights then load_weights into a model of the file's config; validate_checkpoint (--resume
// picks the newest checkpoint that passes), read_checkpoint_info, load_checkpoint into a model and optimizer
// and the run config compared with a run's; load_checkpoint_model and the checkpoint's tokenizer (generate).
// Models are built only for configs of at most kMaxParameters: a file may name any size, and building a
// model of billions of parameters is what the apps would do too, not a finding.
// HDF5 parses the file before our code sees it: a crash inside libhdf5 would be HDF5's, and its leaks on
// malformed files are (tests/lsan_suppressions.txt). Seeds: the checkpoint, HDF5 weights file and safetensors
// export that tests/fuzz/make_seeds.sh makes with train and convert.
#include <cstddef>
#include <cstdint>

#include "apps/lib/run_config.h"
#include "apps/lib/tokenizer.h"
#include "fuzz/harness.h"
#include "nn/adamw.h"
#include "nn/checkpoint.h"
#include "nn/weights.h"

namespace {

using namespace mgl;

constexpr int64_t kMaxParameters = int64_t{1} << 20;

bool small(const nn::MegalodonConfig& config) {
  config.validate();
  return config.parameter_count() <= kMaxParameters;
}

void as_weights(const std::string& path) {
  const nn::Weights weights = nn::read_weights(path);
  if (!weights.config || !small(*weights.config)) return;
  nn::load_weights(weights, nn::Megalodon(*weights.config), path);
  if (!weights.tokenizer.empty()) apps::tokenizer_from_identity(weights.tokenizer, weights.tokenizer_model);
}

void as_checkpoint(const std::string& path) {
  nn::validate_checkpoint(path);
  const nn::CheckpointInfo info = nn::read_checkpoint_info(path);
  if (!small(info.model_config)) return;
  const nn::Megalodon model(info.model_config);
  nn::AdamW optimizer(model.named_parameters());
  const nn::TrainingState state = nn::load_checkpoint(path, model, optimizer);
  apps::first_run_config_difference(state.run_config, apps::RunConfig().to_json(), {});
  nn::load_checkpoint_model(path, model);
  apps::tokenizer_from_identity(state.tokenizer, state.tokenizer_model);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_scratch_file("weights", {reinterpret_cast<const char*>(data), size});
  fuzz::expect_success_or_error([&] { as_weights(path); });
  fuzz::expect_success_or_error([&] { as_checkpoint(path); });
  return 0;
}

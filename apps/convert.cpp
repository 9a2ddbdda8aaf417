// convert: model weights between megalodon.cpp's HDF5 files and safetensors with the official names
// (docs/interop.md). Round trips are bitwise: the tensors keep their dtype, names and order.
//
//   convert IN OUT [--config CFG]
//
// IN:  any weights nn/weights.h reads: a training checkpoint, a run directory (its newest checkpoint), an
//      HDF5 weights file, a .safetensors file or an export directory.
// OUT: ending in .h5, an HDF5 weights file (parameters at the root, as debug_state reads them); otherwise an
//      export directory: model.safetensors, config.json in the official ModelConf form, and tokenizer.model
//      when the tokenizer is a SentencePiece model.
// Every file is written atomically (a temporary file, synced, then renamed). An export directory is several
// files that belong together, so convert holds its lock while writing them (apps/lib/run_lock.h: a second
// convert, or a trainer whose run folder it is, is refused) and writes model.safetensors last: it carries the
// config and the tokenizer identity itself, so a directory that has it is whole, and one that lacks it is
// refused as no export by every reader.
// CFG: the model config (a preset, our JSON or an official ModelConf) when IN carries none; when it
//      carries one, CFG must agree with it.
// tools/convert_pth.py turns an export directory into the official consolidated.pth layout and back.
#include <cstdio>
#include <filesystem>

#include "apps/lib/command_line.h"
#include "apps/lib/files.h"
#include "apps/lib/run_config.h"
#include "apps/lib/run_lock.h"
#include "nn/checkpoint.h"
#include "nn/weights.h"

using namespace mgl;
namespace fs = std::filesystem;

namespace {

int run(const std::string& in, const std::string& out, const std::string& config_name) {
  std::string format;
  nn::Weights weights = nn::read_weights(in, &format);
  if (!config_name.empty()) {
    const nn::MegalodonConfig given = apps::load_model_config(config_name, "convert");
    if (weights.config) {
      const auto difference = nn::first_config_difference(weights.config->to_json(), given.to_json());
      MGL_CHECK(!difference, "--config differs from the config '", in, "' carries at key '", *difference, "'");
    }
    weights.config = given;
  }
  std::string written;
  if (fs::path(out).extension() == ".h5") {
    nn::write_weights_hdf5(out, weights);
    written = "HDF5 weights file";
  } else {
    MGL_CHECK(weights.config, "'", in, "' carries no model config, which an export needs (config.json): pass --config");
    MGL_CHECK(!fs::exists(fs::path(out) / "checkpoints"), "'", out, "' is a run folder (it holds checkpoints/): an ",
              "export there would replace the run's config.json; choose another folder");
    const apps::RunLock lock(out, "export");  // creates the folder
    apps::write_file_atomically((fs::path(out) / "config.json").string(), weights.config->to_official_json() + "\n");
    const fs::path tokenizer = fs::path(out) / "tokenizer.model";
    if (!weights.tokenizer_model.empty()) apps::write_file_atomically(tokenizer.string(), weights.tokenizer_model);
    else fs::remove(tokenizer);  // a stale one would pair these weights with another tokenizer
    nn::write_weights_safetensors((fs::path(out) / "model.safetensors").string(), weights);
    written = "export directory";
  }
  std::printf("convert: %zu tensors, %lld values, from %s (%s) to %s (%s)\n", weights.tensors.size(),
              static_cast<long long>(weights.parameter_count()), in.c_str(), format.c_str(), out.c_str(), written.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"convert: model weights between HDF5 (checkpoints, weights files) and safetensors with the official names"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::string in, out, config;
  app.add_option("IN", in, "checkpoint, run directory, HDF5 weights file, .safetensors file or export directory")
      ->required();
  app.add_option("OUT", out, "FILE.h5 (HDF5 weights file) or a directory (model.safetensors + config.json)")->required();
  app.add_option("--config", config, "model config when IN carries none: preset, JSON file or official ModelConf");
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "convert")) return *status;
  try {
    return run(in, out, config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convert: %s\n", e.what());
    return 1;
  }
}

// debug_state: the interface for agreement tests with any other implementation (as llm.c does with
// PyTorch). Loads parameters and a batch from an HDF5 file, runs forward and backward, and writes the
// logits, the loss and every parameter's gradient.
//
//   debug_state --weights W.h5 --config CFG --out S.h5 [--device cpu|cuda] [--dtype f32|bf16]
//
// W.h5: one dataset per parameter, named like a PyTorch state_dict ("layers.0.mega.cema.alpha"), plus
//       "input_ids" and "targets" (int64, batch × length).
// CFG:  a preset name (mega200M, test, ...) or a JSON file of MegalodonConfig fields, or an official ModelConf.
// S.h5: "logits" (batch, length, vocab) f32, "loss" (scalar) f32, "grads/<name>" f32 for every parameter.
// See docs/debug-state.md.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "apps/lib/files.h"
#include "apps/lib/run_config.h"
#include "autograd/engine.h"
#include "core/cuda_context.h"
#include "nn/megalodon.h"
#include "nn/state_dict.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

// A preset, or a JSON file of model fields (ours or the official ModelConf's, nn/megalodon_config.h).
nn::MegalodonConfig load_config(const std::string& name_or_path) {
  if (!std::filesystem::exists(name_or_path)) return nn::MegalodonConfig::preset(name_or_path);
  nn::ConfigNotes notes;
  nn::MegalodonConfig config = nn::MegalodonConfig::from_json(apps::read_file(name_or_path, "config file"), &notes);
  nn::throw_if_problems("config '" + name_or_path + "'", notes.problems);
  apps::report_ignored_keys("debug_state", notes.ignored);
  return config;
}

int run(const std::string& weights_path, const std::string& config_name, const std::string& out_path,
        const std::string& device_name, const std::string& dtype_name) {
  const Device device = Device::parse(device_name);
  require_cuda(device, "debug_state");
  const DType dtype = dtype_from_name(dtype_name);
  MGL_CHECK(dtype == DType::f32 || dtype == DType::bf16, "debug_state: --dtype must be f32 or bf16, got ", dtype_name);
  const nn::MegalodonConfig config = load_config(config_name);
  config.validate();

  nn::Megalodon model(config);
  const nn::Hdf5File weights(weights_path, nn::Hdf5File::Mode::read);
  nn::load_parameters(model, weights);
  model.to(device);
  model.set_compute_dtype(dtype);  // bf16: mixed precision, gradients of the f32 parameters
  const Tensor ids = weights.read("input_ids");
  const Tensor targets = weights.read("targets");
  MGL_CHECK(ids.dim() == 2 && ids.dtype() == DType::i64 && targets.shape() == ids.shape() &&
                targets.dtype() == DType::i64,
            weights_path, ": input_ids and targets must be int64 [batch, length] of equal shape, got ", ids.describe(),
            " and ", targets.describe());

  const Tensor logits = model.forward(to(ids, device));
  const Tensor loss = nn::Megalodon::loss(logits, to(targets, device));
  backward(loss);

  nn::write_hdf5_atomically(out_path, [&](nn::Hdf5File& out) {
    out.write("logits", logits);
    out.write("loss", loss);
    for (const nn::Parameter& p : model.named_parameters()) {
      MGL_CHECK(p.tensor.grad().defined(), "debug_state: parameter '", p.name, "' received no gradient");
      out.write("grads/" + p.name, p.tensor.grad());
    }
    out.set_attribute("config", config.to_json());
  });
  std::printf("debug_state: %s, %lld parameters, loss %.6f -> %s\n", config.name.c_str(),
              static_cast<long long>(config.parameter_count()), loss.item(), out_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"debug_state: forward + backward of a MEGALODON model on a batch from an HDF5 file"};
  std::string weights, config, out, device = "cpu", dtype = "f32";
  app.add_option("--weights", weights, "HDF5 file with parameters, input_ids and targets")->required();
  app.add_option("--config", config, "preset name or JSON config file")->required();
  app.add_option("--out", out, "HDF5 file to write logits, loss and grads/<name> to")->required();
  app.add_option("--device", device, "cpu, cuda or cuda:N");
  app.add_option("--dtype", dtype, "compute dtype: f32 or bf16");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(weights, config, out, device, dtype);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "debug_state: %s\n", e.what());
    return 1;
  }
}

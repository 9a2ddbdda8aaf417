// debug_state: the interface for agreement tests with any other implementation (as llm.c does with
// PyTorch). Loads parameters and a batch, runs forward and backward, and writes the logits, the loss and
// every parameter's gradient.
//
//   debug_state --weights W --out S.h5 [--config CFG] [--batch B.h5] [--device auto|cpu|cuda] [--dtype f32|bf16]
//
// W:    model weights in any format of nn/weights.h: an HDF5 file with one dataset per parameter, named
//       like a PyTorch state_dict ("layers.0.mega.cema.alpha"), a training checkpoint, a run directory,
//       a safetensors file or an export directory.
// B.h5: "input_ids" and "targets" (int64, batch × length); by default they sit in W beside the parameters.
// CFG:  a preset name (mega200M, test, ...), a JSON file of MegalodonConfig fields, or an official ModelConf;
//       by default the config W carries.
// S.h5: "logits" (batch, length, vocab) f32, "loss" (scalar) f32, "grads/<name>" f32 for every parameter.
// See docs/debug-state.md.
#include <cstdio>

#include "apps/lib/command_line.h"
#include "apps/lib/run_config.h"
#include "apps/lib/trainer.h"
#include "autograd/engine.h"
#include "core/cuda_context.h"
#include "nn/hdf5_file.h"
#include "nn/megalodon.h"
#include "nn/weights.h"
#include "ops/ops.h"

using namespace mgl;

namespace {

struct Arguments {
  std::string weights, config, batch, out, device = "auto", dtype = "f32";
};

int run(const Arguments& a) {
  const Device device = apps::resolve_device(a.device);
  require_cuda(device, "debug_state");
  const DType dtype = dtype_from_name(a.dtype);
  MGL_CHECK(dtype == DType::f32 || dtype == DType::bf16, "debug_state: --dtype must be f32 or bf16, got ", a.dtype);
  nn::Weights weights = nn::read_weights(a.weights);
  MGL_CHECK(!a.config.empty() || weights.config, "'", a.weights, "' carries no model config: pass --config");
  const nn::MegalodonConfig config = a.config.empty() ? *weights.config : apps::load_model_config(a.config, "debug_state");
  config.validate();
  Tensor ids, targets;
  if (a.batch.empty()) {
    try {
      ids = weights.take("input_ids");
      targets = weights.take("targets");
    } catch (const Error&) {
      MGL_FAIL("'", a.weights, "' holds no batch (input_ids and targets): pass --batch B.h5");
    }
  } else {
    const nn::Hdf5File batch(a.batch, nn::Hdf5File::Mode::read);
    ids = batch.read("input_ids");
    targets = batch.read("targets");
  }
  MGL_CHECK(ids.dim() == 2 && ids.dtype() == DType::i64 && targets.shape() == ids.shape() &&
                targets.dtype() == DType::i64,
            "input_ids and targets must be int64 [batch, length] of equal shape, got ", ids.describe(), " and ",
            targets.describe());

  nn::Megalodon model(config);
  nn::load_weights(weights, model, a.weights);
  model.to(device);
  model.set_compute_dtype(dtype);  // bf16: mixed precision, gradients of the f32 parameters

  const Tensor logits = model.forward(to(ids, device));
  const Tensor loss = nn::Megalodon::loss(logits, to(targets, device));
  backward(loss);

  nn::write_hdf5_atomically(a.out, [&](nn::Hdf5File& out) {
    out.write("logits", logits);
    out.write("loss", loss);
    for (const nn::Parameter& p : model.named_parameters()) {
      MGL_CHECK(p.tensor.grad().defined(), "debug_state: parameter '", p.name, "' received no gradient");
      out.write("grads/" + p.name, p.tensor.grad());
    }
    out.set_attribute("config", config.to_json());
  });
  std::printf("debug_state: %s, %lld parameters, loss %.6f -> %s\n", config.name.c_str(),
              static_cast<long long>(config.parameter_count()), loss.item(), a.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"debug_state: forward + backward of a MEGALODON model on a batch"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  Arguments a;
  app.add_option("--weights", a.weights, "parameters: HDF5 weights (with the batch), checkpoint, run directory or safetensors")
      ->required();
  app.add_option("--out", a.out, "HDF5 file to write logits, loss and grads/<name> to")->required();
  app.add_option("--config", a.config, "preset name, JSON model config or official ModelConf (default: the weights')");
  app.add_option("--batch", a.batch, "HDF5 file with input_ids and targets (default: the --weights file)");
  app.add_option("--device", a.device, "auto (CUDA when available), cpu, cuda or cuda:N");
  app.add_option("--dtype", a.dtype, "compute dtype: f32 or bf16");
  if (auto status = mgl::apps::parse_command_line(app, argc, argv, "debug_state")) return *status;
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "debug_state: %s\n", e.what());
    return 1;
  }
}

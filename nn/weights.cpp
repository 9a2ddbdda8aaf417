#include "nn/weights.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string_view>

#include "autograd/grad_mode.h"
#include "base/error.h"
#include "nn/checkpoint.h"
#include "nn/hdf5_file.h"
#include "nn/state_dict.h"

namespace mgl::nn {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTokenizerModel = kCheckpointTokenizerModel;  // an HDF5 weights file stores it alike
constexpr std::string_view kModelPrefix = kCheckpointModelPrefix;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  MGL_CHECK(in.good(), "cannot read '", path.string(), "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What a file that is none of ours looks like, from its first bytes.
std::string describe_foreign(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, sizeof head);
  const std::string start(head, static_cast<size_t>(in.gcount()));
  if (start.rfind("PK\x03\x04", 0) == 0 || (!start.empty() && start[0] == '\x80'))
    return "looks like a PyTorch file (a zip archive or a pickle): convert it with tools/convert_pth.py";
  std::string hex;
  for (unsigned char c : start) {
    static const char* digits = "0123456789abcdef";
    hex += {digits[c >> 4], digits[c & 15], ' '};
  }
  return "is not a training checkpoint, an HDF5 weights file or a safetensors file (it starts with " + hex + ")";
}

Weights read_checkpoint_weights(const std::string& path) {
  const CheckpointInfo info = read_checkpoint_info(path);
  Weights w;
  w.config = info.model_config;
  w.tokenizer = info.state.tokenizer;
  w.tokenizer_model = info.state.tokenizer_model;
  const Hdf5File file(path, Hdf5File::Mode::read);
  for (const std::string& name : file.dataset_names())
    if (name.rfind(kModelPrefix, 0) == 0) w.tensors.emplace_back(name.substr(kModelPrefix.size()), file.read(name));
  return w;
}

Weights read_hdf5_weights(const std::string& path) {
  const Hdf5File file(path, Hdf5File::Mode::read);
  Weights w;
  if (file.has_attribute("model_config")) w.config = MegalodonConfig::from_json(file.string_attribute("model_config"));
  if (file.has_attribute("tokenizer")) w.tokenizer = file.string_attribute("tokenizer");
  if (file.contains(kTokenizerModel)) w.tokenizer_model = file.read_bytes(kTokenizerModel);
  for (const std::string& name : file.dataset_names())
    if (name.find('/') == std::string::npos) w.tensors.emplace_back(name, file.read(name));
  return w;
}

// A safetensors file; `directory` (an export directory) may supply config.json and tokenizer.model.
Weights read_safetensors_weights(const std::string& path, const fs::path& directory) {
  SafetensorsContents contents = read_safetensors(path);
  Weights w;
  w.tensors = std::move(contents.tensors);
  if (contents.metadata.count("model_config")) {
    w.config = MegalodonConfig::from_json(contents.metadata["model_config"]);
  } else if (!directory.empty() && fs::exists(directory / "config.json")) {
    w.config = MegalodonConfig::from_json(read_text(directory / "config.json"));
  }
  if (contents.metadata.count("tokenizer")) w.tokenizer = contents.metadata["tokenizer"];
  if (!directory.empty() && fs::exists(directory / "tokenizer.model"))
    w.tokenizer_model = read_text(directory / "tokenizer.model");
  return w;
}

}  // namespace

Tensor Weights::take(const std::string& name) {
  for (auto it = tensors.begin(); it != tensors.end(); ++it) {
    if (it->first != name) continue;
    Tensor t = it->second;
    tensors.erase(it);
    return t;
  }
  MGL_FAIL("the weights hold no tensor '", name, "'");
}

int64_t Weights::parameter_count() const {
  int64_t count = 0;
  for (const auto& [name, t] : tensors) count += t.numel();
  return count;
}

Weights read_weights(const std::string& path, std::string* what) {
  auto say = [&](const char* format) {
    if (what) *what = format;
  };
  MGL_CHECK(fs::exists(path), "'", path, "' does not exist");
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "model.safetensors")) {
      say("export directory");
      return read_safetensors_weights((fs::path(path) / "model.safetensors").string(), path);
    }
    MGL_CHECK(fs::is_directory(fs::path(path) / "checkpoints"), "'", path,
              "' holds neither model.safetensors (an export directory) nor checkpoints/ (a run directory)");
    const std::optional<std::string> newest = CheckpointDirectory((fs::path(path) / "checkpoints").string(), 1).newest_valid();
    MGL_CHECK(newest, "the run directory '", path, "' holds no valid checkpoint");
    say("run directory");
    return read_checkpoint_weights(*newest);
  }
  if (looks_like_safetensors(path)) {
    say("safetensors file");
    return read_safetensors_weights(path, {});
  }
  std::ifstream in(path, std::ios::binary);
  char signature[8] = {};
  in.read(signature, sizeof signature);
  MGL_CHECK(std::string(signature, sizeof signature) == std::string("\x89HDF\r\n\x1a\n", 8), "'", path, "' ",
            describe_foreign(path));
  if (Hdf5File(path, Hdf5File::Mode::read).has_attribute("magic")) {
    say("training checkpoint");
    return read_checkpoint_weights(path);
  }
  say("HDF5 weights file");
  return read_hdf5_weights(path);
}

void write_weights_hdf5(const std::string& path, const Weights& weights) {
  write_hdf5_atomically(path, [&](Hdf5File& file) {
    for (const auto& [name, tensor] : weights.tensors) file.write(name, tensor);
    if (weights.config) file.set_attribute("model_config", weights.config->to_json());
    if (!weights.tokenizer.empty()) file.set_attribute("tokenizer", weights.tokenizer);
    if (!weights.tokenizer_model.empty()) file.write_bytes(kTokenizerModel, weights.tokenizer_model);
  });
}

void write_weights_safetensors(const std::string& path, const Weights& weights) {
  std::map<std::string, std::string> metadata = {{"format", "pt"}};  // what transformers' loaders expect
  if (weights.config) metadata["model_config"] = weights.config->to_json();
  if (!weights.tokenizer.empty()) metadata["tokenizer"] = weights.tokenizer;
  write_safetensors(path, weights.tensors, metadata);
}

void load_weights(const Weights& weights, const Module& model, const std::string& source, const TensorParallel& tp) {
  NoGradGuard no_grad;
  std::map<std::string, Tensor> unused(weights.tensors.begin(), weights.tensors.end());
  for (const Parameter& p : model.named_parameters()) {
    const auto it = unused.find(p.name);
    MGL_CHECK(it != unused.end(), source, ": parameter '", p.name, "' is missing");
    copy_(p.tensor, checked_piece(it->second, p, tp, source, p.name, "parameter"));
    unused.erase(it);
  }
  MGL_CHECK(unused.empty(), source, ": tensor '", unused.begin()->first, "' is no parameter of this model (",
            unused.size(), " such tensors: another architecture?)");
}

}  // namespace mgl::nn

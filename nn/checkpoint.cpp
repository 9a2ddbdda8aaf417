#include "nn/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "nn/state_dict.h"

namespace mgl::nn {

namespace {

constexpr const char* kOptimizerPrefix = "optimizer/";

std::string moment_name(const std::string& parameter, const char* what) {
  return kOptimizerPrefix + parameter + "/" + what;
}

void check_format(const Hdf5File& file) {
  MGL_CHECK(file.has_attribute("magic") && file.string_attribute("magic") == kCheckpointMagic, file.path(),
            ": not a megalodon.cpp training checkpoint (no or wrong 'magic' attribute)");
  MGL_CHECK(file.has_attribute("version"), file.path(), ": checkpoint has no 'version' attribute");
  const int64_t version = file.int_attribute("version");
  MGL_CHECK(version >= 1 && version <= kCheckpointVersion, file.path(), ": checkpoint format version ", version,
            ", this build reads versions 1 to ", kCheckpointVersion);
  // Version 2 files carry checksums: one missing means the file was made or edited by something else.
  MGL_CHECK(version < 2 || file.sealed(), file.path(), ": checkpoint has no '", Hdf5File::kAttributesChecksum,
            "' attribute (version 2 files carry checksums)");
  for (const char* name : {"model_config", "run_config", "tokenizer", "step", "rng_seed", "rng_offset", "data_position"})
    MGL_CHECK(file.has_attribute(name), file.path(), ": checkpoint has no '", name, "' attribute");
}

TrainingState read_training_state(const Hdf5File& file) {
  TrainingState state;
  state.step = file.int_attribute("step");
  state.rng_seed = static_cast<uint64_t>(file.int_attribute("rng_seed"));
  state.rng_offset = static_cast<uint64_t>(file.int_attribute("rng_offset"));
  state.data_position = file.int_attribute("data_position");
  state.tokenizer = file.string_attribute("tokenizer");
  state.run_config = file.string_attribute("run_config");
  // Absent in checkpoints written before the tokenizer model was stored: the identity still names it.
  if (file.contains(kCheckpointTokenizerModel)) state.tokenizer_model = file.read_bytes(kCheckpointTokenizerModel);
  return state;
}

// Checks the stored model config against model.config(), then reads every parameter (strict: each
// is present and well shaped, and every stored tensor is one of them, one of `others`, or the
// tokenizer model).
void load_model(const Hdf5File& file, const Megalodon& model, const std::set<std::string>& others) {
  const std::optional<std::string> difference =
      first_config_difference(file.string_attribute("model_config"), model.config().to_json());
  MGL_CHECK(!difference, file.path(), ": the checkpoint's model config differs from this model's at key '",
            *difference, "'");
  // Strict in both directions: every model tensor is present (load_parameters checks), and no stored
  // tensor is left unused (a checkpoint of a different architecture with the same config keys).
  std::set<std::string> expected = others;
  expected.insert(kCheckpointTokenizerModel);
  for (const Parameter& p : model.named_parameters()) expected.insert(kCheckpointModelPrefix + p.name);
  for (const std::string& name : file.dataset_names())
    MGL_CHECK(expected.count(name), file.path(), ": checkpoint tensor '", name,
              "' belongs to no parameter of this model");
  load_parameters(model, file, kCheckpointModelPrefix, model.tensor_parallel());
}

// A tensor as the file holds it, and how this rank's copy is a piece of it.
struct StoredTensor {
  std::string name;
  Tensor tensor;
  Sharding sharding;
};

// Every tensor of a checkpoint, in file order: the parameters, then each one's moments (split like
// the parameter) and step count.
std::vector<StoredTensor> checkpoint_tensors(const Megalodon& model, const AdamW& optimizer) {
  std::vector<StoredTensor> out;
  const std::vector<Parameter> parameters = model.named_parameters();
  for (const Parameter& p : parameters) out.push_back({kCheckpointModelPrefix + p.name, p.tensor, p.sharding});
  for (const Parameter& p : parameters) {
    const size_t i = optimizer.index_of(p.name);
    out.push_back({moment_name(p.name, "exp_avg"), optimizer.exp_avg(i), p.sharding});
    out.push_back({moment_name(p.name, "exp_avg_sq"), optimizer.exp_avg_sq(i), p.sharding});
    out.push_back({moment_name(p.name, "step"), Tensor::from_vector<int64_t>({optimizer.step_count(i)}, {1}), {}});
  }
  return out;
}

}  // namespace

std::optional<std::string> first_config_difference(const std::string& stored_json, const std::string& current_json) {
  const nlohmann::ordered_json stored = nlohmann::ordered_json::parse(stored_json, nullptr, false);
  const nlohmann::ordered_json current = nlohmann::ordered_json::parse(current_json, nullptr, false);
  MGL_CHECK(stored.is_object(), "stored model config is not a JSON object");
  MGL_CHECK(current.is_object(), "model config is not a JSON object");
  for (const auto& [key, value] : current.items())
    if (key != "name" && (!stored.contains(key) || stored.at(key) != value)) return key;
  for (const auto& [key, value] : stored.items())
    if (key != "name" && !current.contains(key)) return key;
  return std::nullopt;
}

void save_checkpoint(const std::string& path, const Megalodon& model, const AdamW& optimizer, const TrainingState& state) {
  const std::vector<Parameter> parameters = model.named_parameters();
  MGL_CHECK(optimizer.parameters().size() == parameters.size(), "save_checkpoint: the optimizer holds ",
            optimizer.parameters().size(), " parameters, the model ", parameters.size());
  const TensorParallel& tp = model.tensor_parallel();
  const std::vector<StoredTensor> tensors = checkpoint_tensors(model, optimizer);
  if (tp.rank() != 0) {  // the other ranks of a tensor group send their pieces, in the writer's order
    for (const StoredTensor& t : tensors) whole_of(t.tensor, t.sharding, tp);
    return;
  }
  write_hdf5_atomically(path, [&](Hdf5File& file) {
    file.set_attribute("magic", std::string(kCheckpointMagic));
    file.set_attribute("version", kCheckpointVersion);
    file.set_attribute("model_config", model.config().to_json());
    file.set_attribute("run_config", state.run_config);
    file.set_attribute("tokenizer", state.tokenizer);
    file.set_attribute("step", state.step);
    // Seeds and offsets are 64-bit unsigned; stored as the int64 with the same bits.
    file.set_attribute("rng_seed", static_cast<int64_t>(state.rng_seed));
    file.set_attribute("rng_offset", static_cast<int64_t>(state.rng_offset));
    file.set_attribute("data_position", state.data_position);
    file.write_bytes(kCheckpointTokenizerModel, state.tokenizer_model);
    for (const StoredTensor& t : tensors) file.write(t.name, whole_of(t.tensor, t.sharding, tp));
  });
}

void validate_checkpoint(const std::string& path) {
  const Hdf5File file(path, Hdf5File::Mode::read);
  check_format(file);
  const bool checksummed = file.int_attribute("version") >= 2;
  for (const std::string& name : file.dataset_names()) {
    MGL_CHECK(!checksummed || file.has_checksum(name), path, ": dataset '", name, "' has no checksum");
    if (name == kCheckpointTokenizerModel) file.read_bytes(name);
    else file.read(name);
  }
}

TrainingState load_checkpoint(const std::string& path, const Megalodon& model, AdamW& optimizer) {
  const Hdf5File file(path, Hdf5File::Mode::read);
  check_format(file);
  const std::vector<Parameter> parameters = model.named_parameters();
  std::set<std::string> optimizer_state;
  for (const Parameter& p : parameters)
    for (const char* what : {"exp_avg", "exp_avg_sq", "step"}) optimizer_state.insert(moment_name(p.name, what));
  load_model(file, model, optimizer_state);

  MGL_CHECK(optimizer.parameters().size() == parameters.size(), path, ": the optimizer holds ",
            optimizer.parameters().size(), " parameters, the model ", parameters.size());
  for (const Parameter& p : parameters) {
    for (const char* what : {"exp_avg", "exp_avg_sq", "step"})
      MGL_CHECK(file.contains(moment_name(p.name, what)), path, ": optimizer state '", moment_name(p.name, what),
                "' is missing");
    const Tensor step = file.read(moment_name(p.name, "step"));
    MGL_CHECK(step.numel() == 1 && step.dtype() == DType::i64, path, ": '", moment_name(p.name, "step"),
              "' is ", step.describe(), "; expected one i64");
    auto moment = [&](const char* what) {
      const std::string name = moment_name(p.name, what);
      return checked_piece(file.read(name), p, model.tensor_parallel(), path, name, "optimizer state");
    };
    try {
      optimizer.set_state(optimizer.index_of(p.name), step.to_vector<int64_t>()[0], moment("exp_avg"),
                          moment("exp_avg_sq"));
    } catch (const Error& e) {
      MGL_FAIL(path, ": ", e.what());
    }
  }
  return read_training_state(file);
}

void load_checkpoint_model(const std::string& path, const Megalodon& model) {
  const Hdf5File file(path, Hdf5File::Mode::read);
  check_format(file);
  std::set<std::string> other;  // every optimizer/ tensor is allowed: this load does not read them
  for (const std::string& name : file.dataset_names())
    if (name.rfind(kOptimizerPrefix, 0) == 0) other.insert(name);
  load_model(file, model, other);
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  const Hdf5File file(path, Hdf5File::Mode::read);
  check_format(file);
  CheckpointInfo info;
  info.model_config_json = file.string_attribute("model_config");
  try {
    info.model_config = MegalodonConfig::from_json(info.model_config_json);
  } catch (const Error& e) {
    MGL_FAIL(path, ": the stored model config is unusable: ", e.what());
  }
  info.state = read_training_state(file);
  return info;
}

CheckpointDirectory::CheckpointDirectory(std::string directory, int64_t keep_last)
    : directory_(std::move(directory)), keep_last_(keep_last) {
  MGL_CHECK(keep_last_ >= 1, "checkpoint directory: keep_last must be >= 1, got ", keep_last_);
}

std::string CheckpointDirectory::path_for(int64_t step) const {
  MGL_CHECK(step >= 0, "checkpoint directory: step must be >= 0, got ", step);
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(step));
  return (std::filesystem::path(directory_) / name).string();
}

std::vector<std::pair<int64_t, std::string>> CheckpointDirectory::list() const {
  static const std::regex pattern(R"(step_(\d{8,})\.h5)");
  std::vector<std::pair<int64_t, std::string>> out;
  if (!std::filesystem::is_directory(directory_)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(directory_)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(name, match, pattern))
      out.emplace_back(std::stoll(match[1].str()), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string CheckpointDirectory::save(const Megalodon& model, const AdamW& optimizer, const TrainingState& state) const {
  const std::string path = path_for(state.step);
  const bool writer = model.tensor_parallel().rank() == 0;
  if (writer) {
    std::error_code error;
    std::filesystem::create_directories(directory_, error);
    MGL_CHECK(!error, "checkpoint directory '", directory_, "' cannot be created: ", error.message());
  }
  save_checkpoint(path, model, optimizer, state);
  if (!writer) return path;
  const auto all = list();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i) std::filesystem::remove(all[i].second);
  return path;
}

std::optional<std::string> CheckpointDirectory::newest_valid(std::vector<std::string>* skipped) const {
  const auto all = list();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      validate_checkpoint(it->second);
      return it->second;
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return std::nullopt;
}

}  // namespace mgl::nn

#pragma once
// Training checkpoints: one HDF5 file holding everything a run needs to continue bit for bit.
//   model/<name>                    every parameter, under its state_dict name
//   optimizer/<name>/exp_avg        AdamW's first moment m of that parameter (f32)
//   optimizer/<name>/exp_avg_sq     its second moment v (f32)
//   optimizer/<name>/step           its step count t (i64, shape [1])
//   tokenizer/model                 the serialized SentencePiece model (u8 bytes; empty for the byte
//                                   tokenizer), so that a checkpoint alone can generate text
//   root attributes: format "magic" and "version", "model_config" (the model's config JSON, checked
//   on load), "run_config" (the run's own JSON, returned as is), "step", "rng_seed", "rng_offset",
//   "data_position", "tokenizer".
// Files are written atomically (write_hdf5_atomically): a crash during a save never destroys the last
// good checkpoint. Since version 2 every dataset and the root attributes carry checksums
// (nn/hdf5_file.h), verified at load: a damaged file is refused, naming the damaged part; a parameter
// or moment stored as an integer type, or holding NaN or inf, is refused too, naming the tensor. Files hold whole tensors whatever the process grid: a model split over a tensor
// group (nn/tensor_parallel.h) gathers each sharded tensor to save it and takes its piece to load, so a
// checkpoint saved under any grid loads under any other. Loading is strict: anything missing, misshapen or inconsistent is an mgl::Error
// naming the file and the problem; after such an error the model and optimizer may be partly
// overwritten and must not be used.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/adamw.h"
#include "nn/megalodon.h"

namespace mgl::nn {

inline constexpr const char* kCheckpointMagic = "megalodon.cpp training checkpoint";
inline constexpr int64_t kCheckpointVersion = 2;  // 2: checksums; version 1 files still load
// Where a checkpoint keeps the parameters ("model/<name>") and the tokenizer's bytes (nn/weights.h reads
// both from a checkpoint too).
inline constexpr const char* kCheckpointModelPrefix = "model/";
inline constexpr const char* kCheckpointTokenizerModel = "tokenizer/model";

// Where a run stands besides the tensors.
struct TrainingState {
  int64_t step = 0;            // optimizer steps taken
  uint64_t rng_seed = 0;       // the run's Generator (dropout, data order, ...)
  uint64_t rng_offset = 0;
  int64_t data_position = 0;   // the data loader's position (its own unit: tokens, sequences, ...)
  std::string tokenizer;       // identity of the tokenizer (name, file hash): resuming with another is an error
  std::string run_config;      // the run's configuration as JSON (training options); stored verbatim
  std::string tokenizer_model; // the serialized SentencePiece .model bytes; empty for the byte tokenizer
};

// What a checkpoint says about itself, read without building a model or an optimizer.
struct CheckpointInfo {
  std::string model_config_json;  // as stored
  MegalodonConfig model_config;   // parsed (MegalodonConfig::from_json)
  TrainingState state;
};

// `optimizer` must have been built over model.named_parameters(). For a model split over a tensor
// group, every rank of the group calls it (collective: the sharded tensors are gathered one at a time)
// and the group's rank 0 writes the file.
void save_checkpoint(const std::string& path, const Megalodon& model, const AdamW& optimizer, const TrainingState& state);

// Restores the parameters and the optimizer state and returns the TrainingState. Throws mgl::Error
// when the file is not a readable checkpoint of this format, when the stored model config differs
// from model.config() (naming the first differing key), or when a tensor is missing, extra or misshapen.
TrainingState load_checkpoint(const std::string& path, const Megalodon& model, AdamW& optimizer);

// Opens `path`, checks the format attributes and reads every dataset against its checksum (a whole
// read of the file); throws mgl::Error saying what is wrong.
void validate_checkpoint(const std::string& path);

// The model config and TrainingState of a checkpoint (format checked, no tensors read).
CheckpointInfo read_checkpoint_info(const std::string& path);

// Restores only the model's parameters (inference, evaluation). As strict as load_checkpoint about
// the model: the stored config must equal model.config(), and a missing, misshapen or extra model/
// tensor is an error naming it and the file. The optimizer state in the file is not read.
void load_checkpoint_model(const std::string& path, const Megalodon& model);

// The first key whose value differs between two config JSON objects (keys of either), or nothing when
// they agree. The "name" key (a label) is ignored.
std::optional<std::string> first_config_difference(const std::string& stored_json, const std::string& current_json);

// A directory of checkpoints named step_<8 digits>.h5 that keeps the newest `keep_last`.
class CheckpointDirectory {
 public:
  CheckpointDirectory(std::string directory, int64_t keep_last);  // save() creates the directory

  std::string path_for(int64_t step) const;
  // (step, path) of every checkpoint file in the directory, oldest first.
  std::vector<std::pair<int64_t, std::string>> list() const;
  // Saves at path_for(state.step), then deletes all but the newest keep_last checkpoints. Returns the path.
  // Collective over a split model's tensor group, as save_checkpoint; its rank 0 writes and deletes.
  std::string save(const Megalodon& model, const AdamW& optimizer, const TrainingState& state) const;
  // The newest checkpoint that passes validate_checkpoint (for --resume), or nothing. Each skipped
  // file's error message is appended to `skipped` when given.
  std::optional<std::string> newest_valid(std::vector<std::string>* skipped = nullptr) const;

 private:
  std::string directory_;
  int64_t keep_last_;
};

}  // namespace mgl::nn

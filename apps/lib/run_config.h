#pragma once
// RunConfig: everything a training run is configured by, resolved from three layers (later wins):
//   1. the defaults below (every key, with its type and a one-line description for --help);
//   2. a config file (configs/<name>.json, or any JSON file) with the same nested shape;
//   3. command-line overrides "section.key=value" (--set), value parsed as JSON (bare words as strings).
// Unknown keys and values of the wrong type are errors naming the key, at every layer (all of a file's in
// one error).
//
// The "model" section is a MegalodonConfig: "model.preset" picks a preset (nn/megalodon_config.h) and the
// other model keys override its fields, under our names or those of the official ModelConf. A file that is
// a model config alone (an official ModelConf JSON as megalodon/config.py writes it, or our model fields)
// configures the model of a run with the default settings. The resolved config (to_json) always spells out every model field,
// so a printed or checkpointed config is complete and stands on its own.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/value_range.h"
#include "nn/megalodon_config.h"

namespace mgl::apps {

struct OptimizerSettings {
  double lr = 3e-4;                          // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.98;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // state_dict name substrings exempt from weight decay (empty: every parameter decays, the official recipe)
  std::vector<std::string> no_weight_decay;
  double clip_grad_norm = 1.0;               // 0 disables clipping
};

struct ScheduleSettings {
  std::string decay = "cosine";  // constant | linear | cosine
  int64_t warmup_steps = 100;
  double init_ratio = 1e-4;      // warmup start / peak (the official lr_init_ratio; 0 makes step 1 a no-op)
  double min_lr_ratio = 0.1;     // floor / peak
};

struct TrainSettings {
  int64_t steps = 1000;           // optimizer steps
  int64_t batch_size = 8;         // sequences per micro-batch, over all data-parallel ranks
  int64_t seq_len = 1024;         // tokens per sequence (split over the chunk-parallel ranks)
  int64_t grad_accum = 1;         // micro-batches per optimizer step
  std::string dtype = "auto";     // auto (bf16 on CUDA, f32 on CPU) | f32 | bf16
  int64_t seed = 1234;
  int64_t log_every = 10;
  int64_t checkpoint_every = 500;
  int64_t keep_checkpoints = 3;
  double peak_tflops = 0;         // the devices' peak, each, for MFU (0: 790 for bf16 on CUDA, else no MFU)
};

struct EvalSettings {
  int64_t every = 200;                 // validation every N steps (0: only at the end)
  int64_t batches = 8;                 // validation micro-batches (fixed windows from the start of val.bin)
  int64_t long_context_tokens = 0;     // tokens of the long-context evaluation at the end (0: off)
};

struct DataSettings {
  std::string tokenizer = "bytes";     // bytes | sentencepiece (when the data must be prepared)
  int64_t vocab_size = 0;              // SentencePiece pieces to train (0: the model's vocab_size)
  double val_fraction = 0.01;
};

// How the run is spread over processes (docs/parallelism.md). data * chunk * tensor must equal the
// number of processes mpirun starts; a plain run is 1 x 1 x 1.
struct ParallelSettings {
  int64_t data = 1;             // DP: ranks that each train on their share of the global batch
  int64_t chunk = 1;            // CP: ranks that each hold a contiguous piece of every sequence
  int64_t tensor = 1;           // TP: ranks that each hold a slice of every layer (not built yet: must be 1)
  int64_t zero = 0;             // 1: ZeRO-1, AdamW moments sharded over the data x chunk ranks
  double bucket_mb = 25;        // gradient all-reduce bucket size, MiB
  double timeout_s = 60;        // a communication that takes longer ends the job
  std::string backend = "auto"; // CUDA tensors: auto | nccl | mpi (staged through host memory)
};

struct RunConfig {
  std::string name = "custom";
  nn::MegalodonConfig model = nn::MegalodonConfig::preset("tiny");
  OptimizerSettings optimizer;
  ScheduleSettings schedule;
  TrainSettings train;
  EvalSettings eval;
  DataSettings data;
  ParallelSettings parallel;
  // Keys of the files read that were accepted without effect here (official ModelConf keys), each with
  // its value and why: for the app to report once. Not part of the config itself (to_json).
  std::vector<std::string> ignored_keys;

  // Throws mgl::Error naming the first bad setting: a value outside its range (range_of), or settings that
  // do not fit together.
  void validate() const;
  // The range of a numeric key other than the model's ("optimizer.beta1": [0, 1)); nullopt for the others.
  static std::optional<ValueRange> range_of(const std::string& key);
  // The resolved config: every key, model fields spelled out.
  std::string to_json() const;
  // Starts from the defaults, applies a JSON document (nested as to_json, or a model config alone).
  // Unknown keys and wrong types throw one error naming all of them.
  static RunConfig from_json(const std::string& text);
  // Applies one "section.key=value" override (e.g. "model.num_layers=4", "train.steps=100").
  void set(const std::string& assignment);

  // Loads `name_or_path`: an existing file, or configs/<name>.json searched in the working directory and
  // in the source tree this binary was built from. Throws listing the known names when not found.
  static RunConfig load(const std::string& name_or_path);
  static std::vector<std::string> known_config_names();
  // "key  [value]  description" lines for every settable key, the values those of `shown` (for --help).
  static std::string describe_keys(const RunConfig& shown);
};

// A model config by name: a preset (nn/megalodon_config.h), or a JSON file of model fields, ours or the official
// ModelConf's (its keys without effect reported by report_ignored_keys for `app`).
nn::MegalodonConfig load_model_config(const std::string& name_or_path, const std::string& app);

// Prints "<app>: config keys accepted without effect here: ..." once, on stdout, when there are any.
void report_ignored_keys(const std::string& app, const std::vector<std::string>& ignored);

// The first key (dotted) whose value differs between two resolved configs, ignoring `ignored` keys;
// empty when they agree. Throws mgl::Error when one is not a JSON object.
std::string first_run_config_difference(const std::string& a_json, const std::string& b_json,
                                        const std::vector<std::string>& ignored);

}  // namespace mgl::apps

#pragma once
// The MEGALODON model configuration: every field of docs/megalodon.md §4, the presets of the official
// repository (mega200M ... mega7.3B), the paper's 7B setting, and small ones for tests. Where the paper
// and the official code disagree (docs/megalodon.md §10) the field defaults to the code and the paper's
// choice is one setting away (chunk_size, rope_base, attention_dropout_kind, ...).
//
// JSON documents may use our field names or those of the official repository's ModelConf
// (megalodon/config.py), so an official config is read as it is written (docs/training.md#official-configs):
//   scale_emb, share_emb, layerwise_ckpt   -> scale_embedding, share_embedding, activation_checkpointing
//   efficient_attn null | "swift" | "fused" -> attention_dropout_kind "dropout" | "dropkey" | "dropkey"
//   rope_base null                          -> 10000
//   vocab_size -1 (set by the tokenizer)    -> the base's vocab_size, noted
//   init_mode "he" | "none", output_size -1 -> accepted without effect here, noted
// A document with a key only ModelConf has is in the official form and starts from ModelConf's defaults.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/value_range.h"

namespace mgl::nn {

// What reading a config document found besides the values.
struct ConfigNotes {
  std::vector<std::string> ignored;   // keys accepted without effect here, each with its value and why
  std::vector<std::string> problems;  // unknown keys, wrong types: every one of them
};

struct MegalodonConfig {
  std::string name = "custom";
  int64_t vocab_size = 32000;
  int64_t model_dim = 1024;         // D
  int64_t num_layers = 12;
  int64_t num_heads = 1;            // H
  int64_t z_dim = 256;              // Z: query/key width, dz = Z / H per head
  int64_t value_dim = 2048;         // V: value / gate width, dv = V / H per head
  int64_t ffn_hidden_dim = 2560;    // F
  int64_t cema_ndim = 16;           // N: CEMA modes per channel
  int64_t norm_num_groups = 32;     // G: TimestepNorm groups
  int64_t chunk_size = 2048;        // c: attention chunk (paper 7B: 4096)
  double rope_base = 10000.0;       // paper 7B: 100000
  double norm_eps = 1e-5;
  bool swiglu = false;              // FFN: SwiGLU (fc1, fc2, fc3) or SiLU (fc1, fc2)
  bool share_embedding = false;     // tie the LM head to the embedding
  bool scale_embedding = false;     // multiply embeddings by sqrt(D)
  bool norm_affine = true;          // affine RMSNorm / LayerNorm (TimestepNorm is always affine)
  bool rescale_nffn = false;        // per-channel FFN output scale 0.1 * 0.5^layer
  double dropout = 0.0;             // embedding, Hh, FFN output
  double hidden_dropout = 0.0;      // M, O*R, FFN hidden
  double attention_dropout = 0.0;
  std::string attention_dropout_kind = "dropout";  // "dropout" (unfused path) or "dropkey" (fused path)
  bool activation_checkpointing = false;           // recompute each block in backward
  // Inference (docs/megalodon.md §6.3): "exact" running TimestepNorm statistics, or the official
  // "windowed" mode that, once `norm_window_after_chunks` chunks have been processed, re-estimates every
  // norm state from a cache-less pass over the last `norm_window_chunks` chunks after each prefill batch.
  std::string timestep_norm_mode = "windowed";
  int64_t norm_window_chunks = 6;
  int64_t norm_window_after_chunks = 8;

  int64_t head_z_dim() const { return z_dim / num_heads; }
  int64_t head_value_dim() const { return value_dim / num_heads; }

  // Throws mgl::Error naming the first inconsistent field (divisibility, ranges, kinds).
  void validate() const;
  // The range validate() holds a numeric field to ("norm_eps": (0, 1]); nullopt for the other keys.
  static std::optional<ValueRange> range_of(const std::string& key);
  // Number of parameters of the model this config builds (tied head counted once); validate() checks that it
  // fits.
  int64_t parameter_count() const;

  std::string to_json() const;           // every field, pretty-printed
  std::string to_official_json() const;  // the official ModelConf's fields (inference settings and name dropped)
  // Starts from `base` and applies the keys of a JSON object (ours or ModelConf's). Every unknown key and
  // wrong type is named in one mgl::Error; with `notes`, they are appended to notes->problems instead (for
  // a caller that reports several documents at once). Keys accepted without effect go to notes->ignored.
  static MegalodonConfig from_json(const std::string& text, const MegalodonConfig& base, ConfigNotes* notes = nullptr);
  // Over the defaults above, or over ModelConf's defaults when the document is in the official form.
  static MegalodonConfig from_json(const std::string& text, ConfigNotes* notes = nullptr);
  // A preset by name ("mega200M", "mega1.3B", "mega1.3B_pg19", "mega7.1B", "mega7.3B", "paper7b",
  // "tiny", "test"), or throws listing the known names.
  static MegalodonConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // Applies one "key=value" override (value parsed as the field's type; ModelConf's names work too).
  void set(const std::string& key, const std::string& value);
};

// Whether `text` is UTF-8, as every string of a JSON document must be: text from outside a document (a --set
// value, a file name) is checked before it becomes one, or writing the config would fail.
bool is_utf8(const std::string& text);

// Throws one mgl::Error listing every problem ("<what>: unknown key 'x'; ..."), or returns when there is none.
void throw_if_problems(const std::string& what, const std::vector<std::string>& problems);

}  // namespace mgl::nn

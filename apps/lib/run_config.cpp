#include "apps/lib/run_config.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/lib/files.h"
#include "apps/lib/prepare_data.h"
#include "base/error.h"
#include "nn/lr_schedule.h"
#include "nn/tensor_parallel.h"

namespace mgl::apps {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

// One table of settings (all but the model section) drives JSON in/out, --set, --help and the range checks.
// Each numeric key has its range (docs/training.md, "Config keys and their ranges"): counts of steps up to
// kMaxCount, sizes that fit int32 like the model's, and upper bounds where a larger value can only be a
// mistake (a bucket beyond any device's memory, a timeout of years, a ratio of the peak above 1).
template <class Config, class F>
void for_each_setting(Config& c, F&& f) {
  using R = ValueRange;
  const std::optional<R> text;  // a string or a list: no numeric range
  f("optimizer", "lr", c.optimizer.lr, R::above(0), "peak learning rate");
  f("optimizer", "beta1", c.optimizer.beta1, R::closed_open(0, 1), "AdamW beta1");
  f("optimizer", "beta2", c.optimizer.beta2, R::closed_open(0, 1), "AdamW beta2");
  f("optimizer", "eps", c.optimizer.eps, R::open_closed(0, 1), "AdamW epsilon");
  f("optimizer", "weight_decay", c.optimizer.weight_decay, R::at_least(0),
    "decoupled weight decay (lr * weight_decay < 1: each step scales the weights by 1 - lr * weight_decay)");
  f("optimizer", "no_weight_decay", c.optimizer.no_weight_decay, text,
    "parameter-name substrings exempt from weight decay (default: none, as the official recipe)");
  f("optimizer", "clip_grad_norm", c.optimizer.clip_grad_norm, R::at_least(0),
    "clip gradients to this global L2 norm (0: off)");
  f("schedule", "decay", c.schedule.decay, text, "constant | linear | cosine");
  f("schedule", "warmup_steps", c.schedule.warmup_steps, R::closed(0, kMaxCount),
    "linear warmup steps (at most train.steps unless the decay is constant)");
  f("schedule", "init_ratio", c.schedule.init_ratio, R::closed(0, 1),
    "learning rate of the first step / peak (0: that step is a no-op)");
  f("schedule", "min_lr_ratio", c.schedule.min_lr_ratio, R::closed(0, 1), "final learning rate / peak");
  f("train", "steps", c.train.steps, R::closed(1, kMaxCount), "optimizer steps");
  f("train", "batch_size", c.train.batch_size, R::closed(1, kMaxSize),
    "sequences per micro-batch, over all data-parallel ranks");
  f("train", "seq_len", c.train.seq_len, R::closed(1, kMaxSize),
    "tokens per sequence, split over the chunk-parallel ranks");
  f("train", "grad_accum", c.train.grad_accum, R::closed(1, kMaxSize), "micro-batches per optimizer step");
  f("train", "dtype", c.train.dtype, text, "auto (bf16 on CUDA, f32 on CPU) | f32 | bf16");
  f("train", "seed", c.train.seed, R::at_least(0), "seed of initialisation, data order and dropout");
  f("train", "log_every", c.train.log_every, R::closed(1, kMaxCount), "steps between metrics lines");
  f("train", "checkpoint_every", c.train.checkpoint_every, R::closed(1, kMaxCount),
    "steps between checkpoints (one is always written at the end)");
  f("train", "keep_checkpoints", c.train.keep_checkpoints, R::closed(1, kMaxCount), "newest checkpoints kept");
  f("train", "peak_tflops", c.train.peak_tflops, R::closed(0, 1e6),
    "peak TFLOP/s of one device, the MFU's denominator (0: 790, an H200's measured bf16 rate, for bf16 on CUDA; no MFU otherwise)");
  f("eval", "every", c.eval.every, R::closed(0, kMaxCount), "steps between validations (0: only at the end)");
  f("eval", "batches", c.eval.batches, R::closed(1, kMaxCount), "validation micro-batches");
  f("eval", "long_context_tokens", c.eval.long_context_tokens, R::closed(0, kMaxCount),
    "tokens scored by the long-context evaluation at the end (0: off)");
  f("data", "tokenizer", c.data.tokenizer, text, "bytes | sentencepiece, for data prepared by train");
  f("data", "vocab_size", c.data.vocab_size, R::closed(0, kMaxSize),
    "SentencePiece pieces to train (0: model.vocab_size)");
  f("data", "val_fraction", c.data.val_fraction, kValFractionRange, "held-out tail of the corpus");
  f("parallel", "data", c.parallel.data, R::closed(1, kMaxSize), "data-parallel ranks (DP)");
  f("parallel", "chunk", c.parallel.chunk, R::closed(1, kMaxSize),
    "chunk-parallel ranks (CP): each holds seq_len / CP tokens of a sequence");
  f("parallel", "tensor", c.parallel.tensor, R::closed(1, kMaxSize),
    "tensor-parallel ranks (TP): each block's channels, heads and hidden units split over them");
  f("parallel", "zero", c.parallel.zero, R::closed(0, 1),
    "1: ZeRO-1, optimizer moments sharded over the data x chunk ranks");
  f("parallel", "bucket_mb", c.parallel.bucket_mb, R::closed(0.001, 1048576), "gradient reduction bucket size in MiB");
  f("parallel", "timeout_s", c.parallel.timeout_s, R::open_closed(0, 1e6),
    "seconds a communication may take before the job is ended");
  f("parallel", "backend", c.parallel.backend, text,
    "CUDA tensors: auto | nccl | mpi (staged through pinned host memory)");
}

template <class T>
void assign(const std::string& key, const json& value, T& field, std::vector<std::string>& problems) {
  bool ok = false;
  if constexpr (std::is_same_v<T, bool>) {
    ok = value.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = value.is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = value.is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    ok = value.is_string();
  } else {
    ok = value.is_array() && std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_string(); });
  }
  if (ok) field = value.get<T>();
  else problems.push_back("config key '" + key + "': wrong type of value " + value.dump());
}

// A --set value: JSON when it parses (numbers, true/false, quoted strings, arrays), else a bare string.
json parse_value(const std::string& text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? json(text) : value;
}

// Applies a "model" JSON object: "preset" (if any) first, then the other keys as field overrides.
void apply_model(RunConfig& c, json model, nn::ConfigNotes& notes) {
  if (!model.is_object()) {
    notes.problems.push_back("config key 'model' must be an object, got " + model.dump());
    return;
  }
  if (model.contains("preset")) {
    MGL_CHECK(model["preset"].is_string(), "config key 'model.preset' must be a string");
    c.model = nn::MegalodonConfig::preset(model["preset"].get<std::string>());
    model.erase("preset");
  }
  c.model = nn::MegalodonConfig::from_json(model.dump(), c.model, &notes);
}

// A document that is a model config alone: no section of ours, no object value, a key besides "name".
bool is_model_document(const json& document) {
  bool has_model_key = false;
  for (const auto& [key, value] : document.items()) {
    if (value.is_object()) return false;
    if (key != "name") has_model_key = true;
  }
  return has_model_key;
}

std::vector<fs::path> config_directories() {
  std::vector<fs::path> dirs = {fs::path("configs")};
#ifdef MGL_SOURCE_DIR
  dirs.push_back(fs::path(MGL_SOURCE_DIR) / "configs");
#endif
  return dirs;
}

// Flattens nested objects into dotted keys ("model.num_layers" -> 12).
void flatten(const json& value, const std::string& prefix, std::vector<std::pair<std::string, json>>& out) {
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) flatten(child, prefix.empty() ? key : prefix + "." + key, out);
  } else {
    out.emplace_back(prefix, value);
  }
}

}  // namespace

void RunConfig::validate() const {
  model.validate();
  for_each_setting(*this, [](const char* section, const char* key, const auto& field,
                             const std::optional<ValueRange>& range, const char*) {
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_arithmetic_v<T>) check_in_range(*range, std::string("config: ") + section + "." + key, field);
  });
  MGL_CHECK(optimizer.lr * optimizer.weight_decay < 1, "config: optimizer.lr * optimizer.weight_decay must be < 1 ",
            "(each step scales the weights by 1 - lr * weight_decay), got ", optimizer.lr, " * ",
            optimizer.weight_decay);
  nn::lr_decay_from_string(schedule.decay);
  MGL_CHECK(schedule.decay == "constant" || schedule.warmup_steps <= train.steps, "config: schedule.warmup_steps (",
            schedule.warmup_steps, ") exceeds train.steps (", train.steps, "), which leaves the ", schedule.decay,
            " decay no steps: lower it (--set schedule.warmup_steps=N, N <= ", train.steps,
            "), raise train.steps (--steps), or set schedule.decay=constant");
  MGL_CHECK(train.dtype == "auto" || train.dtype == "f32" || train.dtype == "bf16",
            "config: train.dtype must be auto, f32 or bf16, got '", train.dtype, "'");
  MGL_CHECK(data.tokenizer == "bytes" || data.tokenizer == "sentencepiece",
            "config: data.tokenizer must be bytes or sentencepiece, got '", data.tokenizer, "'");
  const ParallelSettings& p = parallel;
  nn::check_tensor_parallel_sizes(model, p.tensor);
  MGL_CHECK(p.backend == "auto" || p.backend == "nccl" || p.backend == "mpi",
            "config: parallel.backend must be auto, nccl or mpi, got '", p.backend, "'");
  MGL_CHECK(train.batch_size % p.data == 0, "config: train.batch_size (", train.batch_size,
            ") must divide over the parallel.data = ", p.data, " data-parallel ranks");
  if (p.chunk > 1)
    MGL_CHECK(train.seq_len % (p.chunk * model.chunk_size) == 0, "config: train.seq_len (", train.seq_len,
              ") must be a multiple of parallel.chunk * model.chunk_size = ", p.chunk, " * ", model.chunk_size,
              " for chunk parallelism (each rank holds whole attention chunks)");
}

std::optional<ValueRange> RunConfig::range_of(const std::string& key) {
  std::optional<ValueRange> found;
  RunConfig defaults;
  for_each_setting(defaults, [&](const char* section, const char* name, const auto&,
                                 const std::optional<ValueRange>& range, const char*) {
    if (key == std::string(section) + "." + name) found = range;
  });
  return found;
}

std::string RunConfig::to_json() const {
  json out;
  out["name"] = name;
  out["model"] = json::parse(model.to_json());
  for_each_setting(*this, [&](const char* section, const char* key, const auto& field, const std::optional<ValueRange>&,
                               const char*) {
    out[section][key] = field;
  });
  return out.dump(2);
}

RunConfig RunConfig::from_json(const std::string& text) {
  json document;
  try {
    document = json::parse(text);
  } catch (const json::exception& e) {
    MGL_FAIL("config: not valid JSON: ", e.what());
  }
  MGL_CHECK(document.is_object(), "config: expected a JSON object at the top level");
  RunConfig c;
  nn::ConfigNotes notes;
  if (is_model_document(document)) {
    c.model = nn::MegalodonConfig::from_json(text, &notes);
  } else {
    // References, not structured bindings: clang before 16 cannot capture those in the lambda below (the
    // sanitizer build uses clang 14).
    for (const auto& entry : document.items()) {
      const std::string& section = entry.key();
      const json& body = entry.value();
      if (section == "name") {
        if (body.is_string()) c.name = body.get<std::string>();
        else notes.problems.push_back("config key 'name' must be a string");
      } else if (section == "model") {
        apply_model(c, body, notes);
      } else if (!body.is_object()) {
        notes.problems.push_back("section '" + section + "' must be an object");
      } else {
        for (const auto& item : body.items()) {
          const std::string& key = item.key();
          const json& value = item.value();
          bool known = false;
          for_each_setting(c, [&](const char* s, const char* k, auto& field, const std::optional<ValueRange>&, const char*) {
            if (section != s || key != k) return;
            known = true;
            assign(section + "." + key, value, field, notes.problems);
          });
          if (!known) notes.problems.push_back("unknown key '" + section + "." + key + "'");
        }
      }
    }
  }
  nn::throw_if_problems("config (train --help lists the keys)", notes.problems);
  c.ignored_keys = notes.ignored;
  return c;
}

void RunConfig::set(const std::string& assignment) {
  MGL_CHECK(nn::is_utf8(assignment), "--set ", assignment, ": not UTF-8 text");
  const size_t equals = assignment.find('=');
  MGL_CHECK(equals != std::string::npos, "--set expects section.key=value, got '", assignment, "'");
  const std::string key = assignment.substr(0, equals);
  const std::string value = assignment.substr(equals + 1);
  const size_t dot = key.find('.');
  MGL_CHECK(dot != std::string::npos, "--set expects section.key=value, got '", assignment, "'");
  const std::string section = key.substr(0, dot), field_name = key.substr(dot + 1);
  if (section == "model") {
    try {
      if (field_name == "preset") {
        model = nn::MegalodonConfig::preset(value);
      } else {
        model.set(field_name, value);
      }
    } catch (const Error& e) {
      MGL_FAIL("--set ", assignment, ": ", e.what());
    }
    return;
  }
  bool known = false;
  std::vector<std::string> problems;
  for_each_setting(*this, [&](const char* s, const char* k, auto& field, const std::optional<ValueRange>&, const char*) {
    if (section != s || field_name != k) return;
    known = true;
    assign(key, parse_value(value), field, problems);
  });
  MGL_CHECK(known, "config: unknown key '", key, "' (see train --help for the keys)");
  nn::throw_if_problems("config", problems);
}

RunConfig RunConfig::load(const std::string& name_or_path) {
  fs::path path = name_or_path;
  if (!fs::is_regular_file(path)) {
    path.clear();
    for (const fs::path& dir : config_directories()) {
      if (fs::is_regular_file(dir / (name_or_path + ".json"))) {
        path = dir / (name_or_path + ".json");
        break;
      }
    }
  }
  if (path.empty()) {
    std::string known;
    for (const std::string& n : known_config_names()) known += (known.empty() ? "" : ", ") + n;
    MGL_FAIL("config '", name_or_path, "' is neither a file nor a known config (known: ", known, ")");
  }
  try {
    RunConfig c = from_json(read_file(path.string(), "config file"));
    if (c.name == "custom" && nn::is_utf8(path.stem().string())) c.name = path.stem().string();
    return c;
  } catch (const Error& e) {
    MGL_FAIL("in config file '", path.string(), "': ", e.what());
  }
}

std::vector<std::string> RunConfig::known_config_names() {
  std::vector<std::string> names;
  for (const fs::path& dir : config_directories()) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::string RunConfig::describe_keys(const RunConfig& shown) {
  std::ostringstream out;
  out << "Config keys (--set section.key=value; in brackets the values of config '" << shown.name << "'):\n";
  out << "  model.preset  a model preset: ";
  for (const std::string& n : nn::MegalodonConfig::preset_names()) out << n << " ";
  out << "\n";
  // "  key  [value]  in RANGE  description", the range for numbers only.
  auto line = [&](const std::string& key, const json& value, const std::optional<ValueRange>& range,
                  const std::string& description) {
    out << "  " << key << "  [" << value.dump() << "]";
    if (range) out << "  in " << range->describe();
    out << (description.empty() ? "" : "  ") << description << "\n";
  };
  const json model = json::parse(shown.model.to_json());
  for (const auto& item : model.items())
    line("model." + item.key(), item.value(), nn::MegalodonConfig::range_of(item.key()), "");
  for_each_setting(shown, [&](const char* section, const char* key, const auto& field,
                              const std::optional<ValueRange>& range, const char* description) {
    line(std::string(section) + "." + key, json(field), range, description);
  });
  return out.str();
}

nn::MegalodonConfig load_model_config(const std::string& name_or_path, const std::string& app) {
  if (!fs::exists(name_or_path)) return nn::MegalodonConfig::preset(name_or_path);
  nn::ConfigNotes notes;
  nn::MegalodonConfig config = nn::MegalodonConfig::from_json(read_file(name_or_path, "config file"), &notes);
  nn::throw_if_problems("config '" + name_or_path + "'", notes.problems);
  report_ignored_keys(app, notes.ignored);
  return config;
}

void report_ignored_keys(const std::string& app, const std::vector<std::string>& ignored) {
  if (ignored.empty()) return;
  std::string line = app + ": config keys accepted without effect here:";
  for (size_t i = 0; i < ignored.size(); ++i) line += (i ? "; " : " ") + ignored[i];
  std::printf("%s\n", line.c_str());
}

std::string first_run_config_difference(const std::string& a_json, const std::string& b_json,
                                        const std::vector<std::string>& ignored) {
  // A checkpoint's config is text from a file: not JSON (a version-1 file carries no checksum) is an error.
  auto parse = [](const std::string& text) {
    json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    MGL_CHECK(parsed.is_object(), "a run config is not a JSON object: '", text.substr(0, 80), "'");
    return parsed;
  };
  std::vector<std::pair<std::string, json>> a, b;
  flatten(parse(a_json), "", a);
  flatten(parse(b_json), "", b);
  auto lookup = [](const std::vector<std::pair<std::string, json>>& items, const std::string& key) -> const json* {
    for (const auto& [k, v] : items)
      if (k == key) return &v;
    return nullptr;
  };
  auto is_ignored = [&](const std::string& key) {
    return std::find(ignored.begin(), ignored.end(), key) != ignored.end();
  };
  for (const auto* side : {&a, &b}) {
    for (const auto& [key, value] : *side) {
      if (is_ignored(key)) continue;
      const json* other = lookup(side == &a ? b : a, key);
      if (!other || *other != value) return key;
    }
  }
  return "";
}

}  // namespace mgl::apps

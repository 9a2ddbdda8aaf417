#include "nn/megalodon_config.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/error.h"

namespace mgl::nn {

using json = nlohmann::ordered_json;

namespace {

// One table of fields drives JSON output, JSON input, key=value overrides and the range checks. Each numeric
// field has its range (docs/training.md, "Config keys and their ranges"); strings and flags have none. Sizes are
// whole numbers up to kMaxSize (token ids are int32, so vocab_size is; the parameter count, checked by
// validate(), bounds the dimensions together). A dropout of 1 drops everything; a norm_eps above 1 outweighs
// the variance it is added to.
template <class Config, class F>
void for_each_field(Config& c, F&& f) {
  using R = ValueRange;
  const std::optional<R> none;
  const R size = R::closed(1, kMaxSize), probability = R::closed_open(0, 1);
  f("name", c.name, none);
  f("vocab_size", c.vocab_size, size);
  f("model_dim", c.model_dim, size);
  f("num_layers", c.num_layers, size);
  f("num_heads", c.num_heads, size);
  f("z_dim", c.z_dim, size);
  f("value_dim", c.value_dim, size);
  f("ffn_hidden_dim", c.ffn_hidden_dim, size);
  f("cema_ndim", c.cema_ndim, size);
  f("norm_num_groups", c.norm_num_groups, size);
  f("chunk_size", c.chunk_size, size);
  f("rope_base", c.rope_base, R::above(1));
  f("norm_eps", c.norm_eps, R::open_closed(0, 1));
  f("swiglu", c.swiglu, none);
  f("share_embedding", c.share_embedding, none);
  f("scale_embedding", c.scale_embedding, none);
  f("norm_affine", c.norm_affine, none);
  f("rescale_nffn", c.rescale_nffn, none);
  f("dropout", c.dropout, probability);
  f("hidden_dropout", c.hidden_dropout, probability);
  f("attention_dropout", c.attention_dropout, probability);
  f("attention_dropout_kind", c.attention_dropout_kind, none);
  f("activation_checkpointing", c.activation_checkpointing, none);
  f("timestep_norm_mode", c.timestep_norm_mode, none);
  f("norm_window_chunks", c.norm_window_chunks, size);
  f("norm_window_after_chunks", c.norm_window_after_chunks, size);
}

template <class T>
void assign(const std::string& key, const json& value, T& field, std::vector<std::string>& problems) {
  const char* expected = nullptr;
  if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) expected = "true or false";
  } else if constexpr (std::is_integral_v<T>) {
    if (!value.is_number_integer()) expected = "an integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) expected = "a number";
  } else {
    if (!value.is_string()) expected = "a string";
  }
  if (expected) {
    problems.push_back("key '" + key + "' expects " + expected + ", got " + value.dump());
    return;
  }
  field = value.get<T>();
}

// ModelConf's names (megalodon/config.py) for fields named otherwise here.
constexpr std::pair<const char*, const char*> kOfficialAliases[] = {
    {"scale_emb", "scale_embedding"}, {"share_emb", "share_embedding"}, {"layerwise_ckpt", "activation_checkpointing"}};
// Keys only ModelConf has: one of them marks a document in the official form.
constexpr const char* kOfficialOnlyKeys[] = {"efficient_attn", "init_mode", "output_size",
                                             "scale_emb",      "share_emb", "layerwise_ckpt"};

// ModelConf's defaults: ours but for num_layers and ffn_hidden_dim (its vocab_size -1, set by the
// tokenizer, stays ours: the Llama-2 tokenizer's 32000).
MegalodonConfig official_defaults() {
  MegalodonConfig c;
  c.num_layers = 8;
  c.ffn_hidden_dim = 2048;
  return c;
}

// Applies the keys of one document, collecting every problem and every key accepted without effect.
class Reader {
 public:
  Reader(MegalodonConfig& c, ConfigNotes& notes) : c_(c), notes_(notes) {}

  void apply(const std::string& key, const json& value) {
    if (key == "efficient_attn") {  // the official attention paths differ only in their dropout (§2.5.5)
      claim("attention_dropout_kind", key);
      if (value.is_null()) c_.attention_dropout_kind = "dropout";
      else if (value == "swift" || value == "fused") c_.attention_dropout_kind = "dropkey";
      else notes_.problems.push_back("key 'efficient_attn' expects null, \"swift\" or \"fused\", got " + value.dump());
    } else if (key == "init_mode") {
      if (value == "he" || value == "none")
        notes_.ignored.push_back("init_mode " + value.dump() + " (initialization here is always the official \"he\")");
      else if (value == "bert" || value == "gaussian" || value == "xavier")
        notes_.problems.push_back("init_mode " + value.dump() + " is not implemented: only \"he\" (every official preset) or \"none\"");
      else
        notes_.problems.push_back("key 'init_mode' expects \"he\", \"none\", \"bert\", \"gaussian\" or \"xavier\", got " + value.dump());
    } else if (key == "output_size") {  // checked against the final vocab_size in finish()
      if (value.is_number_integer()) output_size_ = value.get<int64_t>();
      else notes_.problems.push_back("key 'output_size' expects an integer, got " + value.dump());
    } else if (key == "vocab_size" && value == -1) {
      claim("vocab_size", key);
      notes_.ignored.push_back("vocab_size -1 (the official code takes it from its tokenizer; " + std::to_string(c_.vocab_size) +
                         " kept, set model.vocab_size to change it)");
    } else if (key == "rope_base" && value.is_null()) {
      claim("rope_base", key);
      c_.rope_base = MegalodonConfig().rope_base;
    } else {
      std::string name = key;
      for (auto [official, ours] : kOfficialAliases)
        if (key == official) name = ours;
      bool known = false;
      for_each_field(c_, [&](const char* field_name, auto& field, const std::optional<ValueRange>&) {
        if (name != field_name) return;
        known = true;
        claim(name, key);
        assign(key, value, field, notes_.problems);
      });
      if (!known) notes_.problems.push_back("unknown key '" + key + "'");
    }
  }

  void finish() {
    if (!output_size_) return;
    if (*output_size_ == -1 || *output_size_ == c_.vocab_size)
      notes_.ignored.push_back("output_size " + std::to_string(*output_size_) + " (the output head is vocab_size wide)");
    else
      notes_.problems.push_back("output_size " + std::to_string(*output_size_) + " differs from vocab_size " +
                          std::to_string(c_.vocab_size) + ": an output head of another width is not supported");
  }

 private:
  // Records that `key` sets `field`; a second key setting the same field is a problem.
  void claim(const std::string& field, const std::string& key) {
    const auto [it, fresh] = set_by_.emplace(field, key);
    if (!fresh) notes_.problems.push_back("keys '" + it->second + "' and '" + key + "' both set " + field);
  }

  MegalodonConfig& c_;
  ConfigNotes& notes_;
  std::map<std::string, std::string> set_by_;
  std::optional<int64_t> output_size_;
};

json parse_object(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    MGL_FAIL("config: invalid JSON: ", e.what());
  }
  MGL_CHECK(j.is_object(), "config: expected a JSON object, got ", j.type_name());
  return j;
}

MegalodonConfig read(const json& document, const MegalodonConfig& base, ConfigNotes* notes) {
  MegalodonConfig c = base;
  ConfigNotes local;
  ConfigNotes& out = notes ? *notes : local;
  Reader reader(c, out);
  for (const auto& [key, value] : document.items()) reader.apply(key, value);
  reader.finish();
  if (!notes) throw_if_problems("config", local.problems);
  return c;
}

MegalodonConfig make(const std::string& name, int64_t layers, int64_t d, int64_t h, int64_t z, int64_t v, int64_t f,
                     bool swiglu, int64_t groups) {
  MegalodonConfig c;
  c.name = name;
  c.num_layers = layers;
  c.model_dim = d;
  c.num_heads = h;
  c.z_dim = z;
  c.value_dim = v;
  c.ffn_hidden_dim = f;
  c.swiglu = swiglu;
  c.norm_num_groups = groups;
  return c;
}

// The parameters a config builds (tied head counted once), in a number type T: int64_t for the count, double
// for validate() to check first that the count fits an int64_t (in double nothing overflows).
template <class T>
T count_parameters(const MegalodonConfig& c) {
  const T D = c.model_dim, Z = c.z_dim, V = c.value_dim, F = c.ffn_hidden_dim, N = c.cema_ndim;
  const T norm = c.norm_affine ? 1 : 0;
  const T timestep_norm = 2 * D;
  const T cema = D * N /*alpha*/ + D * N /*delta*/ + D /*theta*/ + 2 * D * N /*gamma*/ + D /*omega*/;
  const T attention = norm * D /*rmsnorm*/ + (Z * D + Z) /*wz*/ + (V * D + V) /*wv*/ + (V * D + V) /*wr*/ +
                      (D * D + D) /*wh1*/ + D * V /*wh2*/ + 2 * Z /*gamma*/ + 2 * Z /*beta*/;
  const T ffn = norm * 2 * D + (c.swiglu ? 3 : 2) * F * D + (c.rescale_nffn ? D : 0);
  const T per_layer = timestep_norm + cema + attention + ffn;
  const T head = c.share_embedding ? 0 : c.vocab_size * D;
  return c.vocab_size * D + c.num_layers * per_layer + timestep_norm /*final norm*/ + head;
}

}  // namespace

void MegalodonConfig::validate() const {
  for_each_field(*this, [](const char* key, const auto& field, const std::optional<ValueRange>& range) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(field)>>)
      if (range) check_in_range(*range, std::string("config: ") + key, field);
  });
  MGL_CHECK(z_dim % num_heads == 0, "config: z_dim ", z_dim, " is not divisible by num_heads ", num_heads);
  MGL_CHECK(value_dim % num_heads == 0, "config: value_dim ", value_dim, " is not divisible by num_heads ", num_heads);
  MGL_CHECK(head_z_dim() % 2 == 0, "config: the per-head z width ", head_z_dim(), " must be even for rotary embedding");
  MGL_CHECK(model_dim % norm_num_groups == 0, "config: model_dim ", model_dim, " is not divisible by norm_num_groups ",
            norm_num_groups);
  MGL_CHECK(timestep_norm_mode == "exact" || timestep_norm_mode == "windowed",
            "config: timestep_norm_mode must be \"exact\" or \"windowed\", got \"", timestep_norm_mode, "\"");
  MGL_CHECK(norm_window_after_chunks >= norm_window_chunks, "config: norm_window_after_chunks (",
            norm_window_after_chunks, ") must be at least norm_window_chunks (", norm_window_chunks, ")");
  MGL_CHECK(attention_dropout_kind == "dropout" || attention_dropout_kind == "dropkey",
            "config: attention_dropout_kind must be \"dropout\" or \"dropkey\", got \"", attention_dropout_kind, "\"");
  // Every term of the count is positive and at most the total, so a total below 2^62 computes in int64_t
  // without overflow (UBSan, running tests/fuzz/fuzz_config.cpp on `--set model.model_dim=1099511627776`: the
  // count overflowed, and `train` prints it before building the model).
  const double parameters = count_parameters<double>(*this);
  MGL_CHECK(parameters < 0x1p62, "config: the model would have ", parameters, " parameters, more than 2^62");
}

std::optional<ValueRange> MegalodonConfig::range_of(const std::string& key) {
  std::optional<ValueRange> found;
  const MegalodonConfig defaults;
  for_each_field(defaults, [&](const char* name, const auto&, const std::optional<ValueRange>& range) {
    if (key == name) found = range;
  });
  return found;
}

int64_t MegalodonConfig::parameter_count() const { return count_parameters<int64_t>(*this); }

std::string MegalodonConfig::to_json() const {
  json j;
  for_each_field(*this, [&](const char* key, const auto& field, const std::optional<ValueRange>&) { j[key] = field; });
  return j.dump(2);
}

std::string MegalodonConfig::to_official_json() const {
  json j;  // in ModelConf's order
  j["num_layers"] = num_layers;
  j["model_dim"] = model_dim;
  j["z_dim"] = z_dim;
  j["value_dim"] = value_dim;
  j["num_heads"] = num_heads;
  j["ffn_hidden_dim"] = ffn_hidden_dim;
  j["cema_ndim"] = cema_ndim;
  j["chunk_size"] = chunk_size;
  j["efficient_attn"] = attention_dropout_kind == "dropkey" ? json("fused") : json(nullptr);
  j["init_mode"] = "he";
  j["vocab_size"] = vocab_size;
  j["output_size"] = -1;
  j["norm_num_groups"] = norm_num_groups;
  j["norm_affine"] = norm_affine;
  j["norm_eps"] = norm_eps;
  j["rope_base"] = rope_base;
  j["dropout"] = dropout;
  j["hidden_dropout"] = hidden_dropout;
  j["attention_dropout"] = attention_dropout;
  j["swiglu"] = swiglu;
  j["rescale_nffn"] = rescale_nffn;
  j["scale_emb"] = scale_embedding;
  j["share_emb"] = share_embedding;
  j["layerwise_ckpt"] = activation_checkpointing;
  return j.dump(2);
}

MegalodonConfig MegalodonConfig::from_json(const std::string& text, const MegalodonConfig& base, ConfigNotes* notes) {
  return read(parse_object(text), base, notes);
}

MegalodonConfig MegalodonConfig::from_json(const std::string& text, ConfigNotes* notes) {
  const json document = parse_object(text);
  const bool official = std::any_of(std::begin(kOfficialOnlyKeys), std::end(kOfficialOnlyKeys),
                                    [&](const char* key) { return document.contains(key); });
  return read(document, official ? official_defaults() : MegalodonConfig(), notes);
}

void MegalodonConfig::set(const std::string& key, const std::string& value) {
  MGL_CHECK(is_utf8(key) && is_utf8(value), "config: the override of '", key, "' is not UTF-8 text");
  // The value as JSON (a number, true/false, null); a string field, or text that is no JSON, takes it as it is.
  json parsed = json::parse(value, nullptr, /*allow_exceptions=*/false);
  for_each_field(*this, [&](const char* name, auto& field, const std::optional<ValueRange>&) {
    if (key == name && std::is_same_v<std::decay_t<decltype(field)>, std::string>) parsed = json(value);
  });
  if (parsed.is_discarded()) parsed = json(value);
  json document = json::object();
  document[key] = parsed;
  *this = read(document, *this, nullptr);
}

bool is_utf8(const std::string& text) {
  try {
    (void)json(text).dump();  // nlohmann's own check: dump() refuses a string that is not UTF-8
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

void throw_if_problems(const std::string& what, const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string message = what + ": ";
  for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
  MGL_FAIL(message);
}

std::vector<std::string> MegalodonConfig::preset_names() {
  return {"mega200M", "mega1.3B", "mega1.3B_pg19", "mega7.1B", "mega7.3B", "paper7b", "tiny", "test"};
}

MegalodonConfig MegalodonConfig::preset(const std::string& name) {
  // Official presets (XuezheMax/megalodon megalodon/model/mega.py ModelStore, docs/megalodon.md §4.1):
  // N = 16, chunk 2048, RoPE base 10000, vocab from the tokenizer (32000 for the Llama-2 tokenizer).
  if (name == "mega200M") return make(name, 12, 1024, 1, 256, 2048, 2560, false, 32);
  if (name == "mega1.3B") return make(name, 24, 2048, 2, 512, 4096, 4864, false, 64);
  if (name == "mega1.3B_pg19") {
    MegalodonConfig c = make(name, 24, 2048, 2, 512, 4096, 3584, true, 64);
    c.share_embedding = true;
    c.scale_embedding = true;
    return c;
  }
  if (name == "mega7.1B") return make(name, 32, 4096, 4, 1024, 8192, 11264, false, 64);
  if (name == "mega7.3B") return make(name, 32, 4096, 4, 1024, 8192, 8192, true, 64);
  if (name == "paper7b") {  // paper §4.1: mega7.3B with chunk 4096 and RoPE base 100000
    MegalodonConfig c = make(name, 32, 4096, 4, 1024, 8192, 8192, true, 64);
    c.chunk_size = 4096;
    c.rope_base = 100000.0;
    return c;
  }
  if (name == "tiny") {  // trains on two CPU cores in minutes (byte-level vocabulary)
    MegalodonConfig c = make(name, 2, 128, 2, 64, 256, 256, true, 8);
    c.vocab_size = 256;
    c.cema_ndim = 8;
    c.chunk_size = 64;
    return c;
  }
  if (name == "test") {  // the smallest model that exercises every path, for unit tests
    MegalodonConfig c = make(name, 2, 16, 2, 8, 12, 24, true, 4);
    c.vocab_size = 50;
    c.cema_ndim = 4;
    c.chunk_size = 8;
    return c;
  }
  std::string known;
  for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  MGL_FAIL("unknown model preset '", name, "' (known: ", known, ")");
}

}  // namespace mgl::nn

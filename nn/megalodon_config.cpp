#include "nn/megalodon_config.h"

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace mgl::nn {

using json = nlohmann::ordered_json;

namespace {

// One table of fields drives JSON output, JSON input and key=value overrides.
template <class F>
void for_each_field(MegalodonConfig& c, F&& f) {
  f("name", c.name);
  f("vocab_size", c.vocab_size);
  f("model_dim", c.model_dim);
  f("num_layers", c.num_layers);
  f("num_heads", c.num_heads);
  f("z_dim", c.z_dim);
  f("value_dim", c.value_dim);
  f("ffn_hidden_dim", c.ffn_hidden_dim);
  f("cema_ndim", c.cema_ndim);
  f("norm_num_groups", c.norm_num_groups);
  f("chunk_size", c.chunk_size);
  f("rope_base", c.rope_base);
  f("norm_eps", c.norm_eps);
  f("swiglu", c.swiglu);
  f("share_embedding", c.share_embedding);
  f("scale_embedding", c.scale_embedding);
  f("norm_affine", c.norm_affine);
  f("rescale_nffn", c.rescale_nffn);
  f("dropout", c.dropout);
  f("hidden_dropout", c.hidden_dropout);
  f("attention_dropout", c.attention_dropout);
  f("attention_dropout_kind", c.attention_dropout_kind);
  f("activation_checkpointing", c.activation_checkpointing);
  f("timestep_norm_mode", c.timestep_norm_mode);
  f("norm_window_chunks", c.norm_window_chunks);
  f("norm_window_after_chunks", c.norm_window_after_chunks);
}

template <class T>
void assign(const std::string& key, const json& value, T& field) {
  try {
    if constexpr (std::is_same_v<T, bool>) {
      MGL_CHECK(value.is_boolean(), "config key '", key, "' expects true or false, got ", value.dump());
    } else if constexpr (std::is_integral_v<T>) {
      MGL_CHECK(value.is_number_integer(), "config key '", key, "' expects an integer, got ", value.dump());
    } else if constexpr (std::is_floating_point_v<T>) {
      MGL_CHECK(value.is_number(), "config key '", key, "' expects a number, got ", value.dump());
    } else {
      MGL_CHECK(value.is_string(), "config key '", key, "' expects a string, got ", value.dump());
    }
    field = value.get<T>();
  } catch (const json::exception& e) {
    MGL_FAIL("config key '", key, "': ", e.what());
  }
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

}  // namespace

void MegalodonConfig::validate() const {
  auto positive = [](const char* key, int64_t v) { MGL_CHECK(v > 0, "config: ", key, " must be positive, got ", v); };
  positive("vocab_size", vocab_size);
  positive("model_dim", model_dim);
  positive("num_layers", num_layers);
  positive("num_heads", num_heads);
  positive("z_dim", z_dim);
  positive("value_dim", value_dim);
  positive("ffn_hidden_dim", ffn_hidden_dim);
  positive("cema_ndim", cema_ndim);
  positive("norm_num_groups", norm_num_groups);
  positive("chunk_size", chunk_size);
  MGL_CHECK(z_dim % num_heads == 0, "config: z_dim ", z_dim, " is not divisible by num_heads ", num_heads);
  MGL_CHECK(value_dim % num_heads == 0, "config: value_dim ", value_dim, " is not divisible by num_heads ", num_heads);
  MGL_CHECK(head_z_dim() % 2 == 0, "config: the per-head z width ", head_z_dim(), " must be even for rotary embedding");
  MGL_CHECK(model_dim % norm_num_groups == 0, "config: model_dim ", model_dim, " is not divisible by norm_num_groups ",
            norm_num_groups);
  MGL_CHECK(rope_base > 1.0, "config: rope_base must be > 1, got ", rope_base);
  MGL_CHECK(norm_eps > 0.0, "config: norm_eps must be positive, got ", norm_eps);
  for (auto [key, p] : {std::pair{"dropout", dropout}, std::pair{"hidden_dropout", hidden_dropout},
                        std::pair{"attention_dropout", attention_dropout}})
    MGL_CHECK(p >= 0.0 && p < 1.0, "config: ", key, " must be in [0, 1), got ", p);
  MGL_CHECK(timestep_norm_mode == "exact" || timestep_norm_mode == "windowed",
            "config: timestep_norm_mode must be \"exact\" or \"windowed\", got \"", timestep_norm_mode, "\"");
  positive("norm_window_chunks", norm_window_chunks);
  MGL_CHECK(norm_window_after_chunks >= norm_window_chunks, "config: norm_window_after_chunks (",
            norm_window_after_chunks, ") must be at least norm_window_chunks (", norm_window_chunks, ")");
  MGL_CHECK(attention_dropout_kind == "dropout" || attention_dropout_kind == "dropkey",
            "config: attention_dropout_kind must be \"dropout\" or \"dropkey\", got \"", attention_dropout_kind, "\"");
}

int64_t MegalodonConfig::parameter_count() const {
  const int64_t D = model_dim, Z = z_dim, V = value_dim, F = ffn_hidden_dim, N = cema_ndim;
  const int64_t norm = norm_affine ? 1 : 0;
  const int64_t timestep_norm = 2 * D;
  const int64_t cema = D * N /*alpha*/ + D * N /*delta*/ + D /*theta*/ + 2 * D * N /*gamma*/ + D /*omega*/;
  const int64_t attention = norm * D /*rmsnorm*/ + (Z * D + Z) /*wz*/ + (V * D + V) /*wv*/ + (V * D + V) /*wr*/ +
                            (D * D + D) /*wh1*/ + D * V /*wh2*/ + 2 * Z /*gamma*/ + 2 * Z /*beta*/;
  const int64_t ffn = norm * 2 * D + (swiglu ? 3 : 2) * F * D + (rescale_nffn ? D : 0);
  const int64_t per_layer = timestep_norm + cema + attention + ffn;
  const int64_t head = share_embedding ? 0 : vocab_size * D;
  return vocab_size * D + num_layers * per_layer + timestep_norm /*final norm*/ + head;
}

std::string MegalodonConfig::to_json() const {
  json j;
  MegalodonConfig copy = *this;
  for_each_field(copy, [&](const char* key, const auto& field) { j[key] = field; });
  return j.dump(2);
}

MegalodonConfig MegalodonConfig::from_json(const std::string& text, const MegalodonConfig& base) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    MGL_FAIL("config: invalid JSON: ", e.what());
  }
  MGL_CHECK(j.is_object(), "config: expected a JSON object, got ", j.type_name());
  MegalodonConfig c = base;
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
    for_each_field(c, [&](const char* key, auto& field) {
      if (it.key() != key) return;
      known = true;
      assign(key, it.value(), field);
    });
    MGL_CHECK(known, "config: unknown key '", it.key(), "'");
  }
  return c;
}

MegalodonConfig MegalodonConfig::from_json(const std::string& text) { return from_json(text, MegalodonConfig()); }

void MegalodonConfig::set(const std::string& key, const std::string& value) {
  bool known = false;
  for_each_field(*this, [&](const char* name, auto& field) {
    if (key != name) return;
    known = true;
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_same_v<T, std::string>) {
      field = value;
    } else {
      json parsed;
      try {
        parsed = json::parse(value);
      } catch (const json::exception&) {
        MGL_FAIL("config: cannot parse value '", value, "' for key '", key, "'");
      }
      assign(key, parsed, field);
    }
  });
  MGL_CHECK(known, "config: unknown key '", key, "'");
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

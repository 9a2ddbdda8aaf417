// MEGALODON configuration: preset parameter counts equal docs/megalodon.md §4.1, JSON round trip, overrides,
// and clear errors for bad configs.
#include <cmath>

#include "base/error.h"
#include "nn/megalodon_config.h"
#include "support/testing.h"

using mgl::Error;
using mgl::kMaxSize;
using mgl::nn::MegalodonConfig;

TEST_CASE("preset parameter counts equal the spec's table (vocab 32000)", "[nn][config]") {
  // docs/megalodon.md §4.1
  const std::pair<const char*, int64_t> expected[] = {{"mega200M", 220627968},       {"mega1.3B", 1342832640},
                                                      {"mega1.3B_pg19", 1327628288}, {"mega7.1B", 7117381632},
                                                      {"mega7.3B", 7385817088},      {"paper7b", 7385817088}};
  for (const auto& [name, count] : expected) {
    INFO(name);
    const MegalodonConfig c = MegalodonConfig::preset(name);
    CHECK_NOTHROW(c.validate());
    CHECK(c.parameter_count() == count);
  }
}

TEST_CASE("paper7b differs from mega7.3B only in chunk size and RoPE base", "[nn][config]") {
  MegalodonConfig paper = MegalodonConfig::preset("paper7b");
  MegalodonConfig code = MegalodonConfig::preset("mega7.3B");
  CHECK(paper.chunk_size == 4096);
  CHECK(paper.rope_base == 100000.0);
  code.name = paper.name;
  code.chunk_size = paper.chunk_size;
  code.rope_base = paper.rope_base;
  CHECK(code.to_json() == paper.to_json());
}

TEST_CASE("config JSON round trip and overrides", "[nn][config]") {
  MegalodonConfig c = MegalodonConfig::preset("mega200M");
  c.set("num_layers", "4");
  c.set("rope_base", "100000");
  c.set("swiglu", "true");
  c.set("attention_dropout_kind", "dropkey");
  CHECK(c.num_layers == 4);
  CHECK(c.rope_base == 100000.0);
  CHECK(c.swiglu);
  const MegalodonConfig back = MegalodonConfig::from_json(c.to_json());
  CHECK(back.to_json() == c.to_json());
  const MegalodonConfig partial = MegalodonConfig::from_json(R"({"chunk_size": 512})", c);
  CHECK(partial.chunk_size == 512);
  CHECK(partial.num_layers == 4);
}

TEST_CASE("bad configs are rejected with the offending key named", "[nn][config]") {
  CHECK(mgl::testing::error_message([] { MegalodonConfig::from_json(R"({"num_layerz": 3})"); }).find("num_layerz") != std::string::npos);
  CHECK(mgl::testing::error_message([] { MegalodonConfig::from_json(R"({"num_layers": "three"})"); }).find("num_layers") !=
        std::string::npos);
  CHECK(mgl::testing::error_message([] { MegalodonConfig::from_json("{not json"); }).find("invalid JSON") != std::string::npos);
  CHECK(mgl::testing::error_message([] { MegalodonConfig::preset("mega9B"); }).find("mega9B") != std::string::npos);
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.z_dim = 9;
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("z_dim") != std::string::npos);
  c = MegalodonConfig::preset("test");
  c.dropout = 1.0;
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("dropout") != std::string::npos);
  c = MegalodonConfig::preset("test");
  CHECK_THROWS_AS(c.set("model_dim", "abc"), Error);
  CHECK_THROWS_AS(c.set("nope", "1"), Error);
}

TEST_CASE("a config whose parameter count overflows is refused", "[nn][config]") {
  // UBSan under tests/fuzz/fuzz_config.cpp: model_dim 2^40 passed validate() and overflowed the int64 count.
  // Each size is now at most 2^31 - 1 on its own; together they can still overflow.
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.model_dim = int64_t{1} << 30;
  c.num_layers = kMaxSize;
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("more than 2^62") != std::string::npos);
  c = MegalodonConfig::preset("test");
  c.model_dim = int64_t{1} << 30;
  c.vocab_size = kMaxSize;
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("more than 2^62") != std::string::npos);
  c = MegalodonConfig::preset("mega7.3B");
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("a numeric field outside its range is refused naming the field and the range", "[nn][config]") {
  struct Case {
    const char* key;
    const char* value;
    const char* message;
  };
  for (const Case& bad : {Case{"vocab_size", "2147483648", "vocab_size must be in [1, 2147483647], got 2147483648"},
                          Case{"chunk_size", "0", "chunk_size must be in [1, 2147483647], got 0"},
                          Case{"dropout", "1", "dropout must be in [0, 1), got 1"},
                          Case{"hidden_dropout", "-0.1", "hidden_dropout must be in [0, 1), got -0.1"},
                          Case{"norm_eps", "0", "norm_eps must be in (0, 1], got 0"},
                          Case{"norm_eps", "2", "norm_eps must be in (0, 1], got 2"},
                          Case{"rope_base", "1", "rope_base must be in (1, inf), got 1"},
                          Case{"norm_window_chunks", "0", "norm_window_chunks must be in [1, 2147483647], got 0"}}) {
    MegalodonConfig c = MegalodonConfig::preset("test");
    c.set(bad.key, bad.value);
    const std::string message = mgl::testing::error_message([&] { c.validate(); });
    INFO(bad.key << "=" << bad.value << ": " << message);
    CHECK(message.find(std::string("config: ") + bad.message) != std::string::npos);
  }
  // NaN and the infinities pass comparisons written the wrong way round; the ranges refuse them (JSON has
  // neither, so they come from code, a checkpoint's attributes or a fuzzer).
  MegalodonConfig c = MegalodonConfig::preset("test");
  c.attention_dropout = std::nan("");
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("attention_dropout must be in [0, 1), got nan") !=
        std::string::npos);
  c = MegalodonConfig::preset("test");
  c.rope_base = INFINITY;
  CHECK(mgl::testing::error_message([&] { c.validate(); }).find("rope_base must be in (1, inf), got inf") !=
        std::string::npos);
  CHECK(MegalodonConfig::range_of("dropout")->describe() == "[0, 1)");
  CHECK_FALSE(MegalodonConfig::range_of("timestep_norm_mode"));
}

// megalodon/config.py ModelConf of the mega7.3B preset, as json.dumps(dataclasses.asdict(conf)) writes it.
static const char* kOfficialMega73B = R"({"num_layers": 32, "model_dim": 4096, "z_dim": 1024, "value_dim": 8192,
  "num_heads": 4, "ffn_hidden_dim": 8192, "cema_ndim": 16, "chunk_size": 2048, "efficient_attn": null,
  "init_mode": "he", "vocab_size": 32000, "output_size": -1, "norm_num_groups": 64, "norm_affine": true,
  "norm_eps": 1e-05, "rope_base": null, "dropout": 0.0, "hidden_dropout": 0.0, "attention_dropout": 0.0,
  "swiglu": true, "rescale_nffn": false, "scale_emb": false, "share_emb": false, "layerwise_ckpt": false})";

TEST_CASE("an official ModelConf JSON is read as the official code writes it", "[nn][config]") {
  mgl::nn::ConfigNotes notes;
  MegalodonConfig c = MegalodonConfig::from_json(kOfficialMega73B, &notes);
  CHECK(notes.problems.empty());
  c.name = "mega7.3B";
  CHECK(c.to_json() == MegalodonConfig::preset("mega7.3B").to_json());
  // The keys without effect here are each reported once, with their values.
  REQUIRE(notes.ignored.size() == 2);
  CHECK(mgl::testing::contains(notes.ignored[0], "init_mode \"he\""));
  CHECK(mgl::testing::contains(notes.ignored[1], "output_size -1"));
}

TEST_CASE("official ModelConf keys, each alone", "[nn][config]") {
  const MegalodonConfig base = MegalodonConfig::preset("test");
  auto read = [&](const std::string& json) { return MegalodonConfig::from_json(json, base); };
  CHECK(read(R"({"efficient_attn": null})").attention_dropout_kind == "dropout");
  CHECK(read(R"({"efficient_attn": "fused"})").attention_dropout_kind == "dropkey");
  CHECK(read(R"({"efficient_attn": "swift"})").attention_dropout_kind == "dropkey");
  CHECK(read(R"({"init_mode": "he"})").to_json() == base.to_json());
  CHECK(read(R"({"init_mode": "none"})").to_json() == base.to_json());
  CHECK(read(R"({"output_size": -1})").to_json() == base.to_json());
  CHECK(read(R"({"output_size": 50})").to_json() == base.to_json());  // = vocab_size
  CHECK(read(R"({"layerwise_ckpt": true})").activation_checkpointing);
  CHECK(read(R"({"scale_emb": true})").scale_embedding);
  CHECK(read(R"({"share_emb": true})").share_embedding);
  CHECK(read(R"({"rope_base": null})").rope_base == 10000.0);
  CHECK(read(R"({"rope_base": 100000.0})").rope_base == 100000.0);
  CHECK(read(R"({"vocab_size": -1})").vocab_size == base.vocab_size);
  MegalodonConfig set = base;
  set.set("share_emb", "true");
  set.set("rope_base", "null");
  set.set("efficient_attn", "fused");
  CHECK(set.share_embedding);
  CHECK(set.rope_base == 10000.0);
  CHECK(set.attention_dropout_kind == "dropkey");
}

TEST_CASE("a partial official document starts from ModelConf's defaults", "[nn][config]") {
  const MegalodonConfig c = MegalodonConfig::from_json(R"({"model_dim": 64, "share_emb": true})");
  CHECK(c.num_layers == 8);  // ModelConf's, not our 12
  CHECK(c.ffn_hidden_dim == 2048);
  CHECK(c.model_dim == 64);
  // A document of our own keys starts from ours.
  CHECK(MegalodonConfig::from_json(R"({"model_dim": 64})").num_layers == MegalodonConfig().num_layers);
}

TEST_CASE("every bad key of a document is named in one error", "[nn][config]") {
  const std::string message = mgl::testing::error_message([] {
    MegalodonConfig::from_json(R"({"num_layerz": 3, "swiglu": 1, "efficient_attn": "flash", "init_mode": "xavier",
                                   "output_size": 7, "scale_emb": true, "scale_embedding": false, "colour": "red"})");
  });
  for (const char* part : {"num_layerz", "swiglu", "efficient_attn", "xavier", "output_size 7", "scale_emb' and 'scale_embedding",
                           "colour"})
    CHECK(mgl::testing::contains(message, part));
  mgl::nn::ConfigNotes notes;  // with notes, problems are collected instead of thrown
  MegalodonConfig::from_json(R"({"a": 1, "b": 2})", &notes);
  CHECK(notes.problems.size() == 2);
}

TEST_CASE("to_official_json writes a ModelConf that reads back", "[nn][config]") {
  MegalodonConfig c = MegalodonConfig::preset("mega1.3B_pg19");
  c.attention_dropout_kind = "dropkey";
  c.activation_checkpointing = true;
  c.rope_base = 100000.0;
  const std::string official = c.to_official_json();
  CHECK(mgl::testing::contains(official, "\"efficient_attn\": \"fused\""));
  CHECK(mgl::testing::contains(official, "\"layerwise_ckpt\": true"));
  MegalodonConfig back = MegalodonConfig::from_json(official);
  back.name = c.name;
  CHECK(back.to_json() == c.to_json());
}

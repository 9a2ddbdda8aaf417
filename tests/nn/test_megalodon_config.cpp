// MEGALODON configuration: preset parameter counts equal docs/megalodon.md §4.1, JSON round trip, overrides,
// and clear errors for bad configs.
#include "base/error.h"
#include "nn/megalodon_config.h"
#include "support/testing.h"

using mgl::Error;
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

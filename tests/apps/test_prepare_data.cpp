// prepare_data (apps/lib/prepare_data.h): compressed and plain inputs give the same shards, the split and
// meta.json are as documented, bad inputs are clear errors, and files that are not text (token ids of
// nanoGPT or llm.c, our own shards, checkpoints, pickles, UTF-16) are refused saying what they look like.
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/lib/prepare_data.h"
#include "apps/lib/token_shards.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::string sample_text(size_t lines) {
  std::string text;
  for (size_t i = 0; i < lines; ++i) text += "Line " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog.\n";
  return text;
}

}  // namespace

TEST_CASE("prepare: plain and gzip inputs give the same shards; the split is the tail", "[apps][prepare]") {
  const fs::path dir = scratch("plain_gzip");
  const std::string text = sample_text(400);
  std::ofstream(dir / "a.txt", std::ios::binary) << text;
  gzFile gz = gzopen((dir / "a.txt.gz").c_str(), "wb");
  REQUIRE(gz);
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  CHECK(read_text_file((dir / "a.txt.gz").string()) == text);

  PrepareOptions o;
  o.seq_len = 64;
  o.val_fraction = 0.1;
  o.inputs = {(dir / "a.txt").string()};
  o.out = (dir / "plain").string();
  const PreparedData plain = prepare_data(o);
  o.inputs = {(dir / "a.txt.gz").string()};
  o.out = (dir / "gz").string();
  const PreparedData compressed = prepare_data(o);

  const std::vector<uint32_t> train = read_token_shard(plain.train_path()).tokens;
  const std::vector<uint32_t> val = read_token_shard(plain.val_path()).tokens;
  CHECK(train == read_token_shard(compressed.train_path()).tokens);
  CHECK(val == read_token_shard(compressed.val_path()).tokens);
  CHECK(static_cast<int64_t>(val.size()) == static_cast<int64_t>(std::ceil(0.1 * text.size())));
  CHECK(train.size() + val.size() == text.size());
  CHECK(static_cast<char>(train[0]) == text[0]);
  CHECK(static_cast<char>(val.back()) == text.back());
  CHECK(plain.tokenizer_identity == "bytes");
  CHECK(plain.vocab_size == 256);
  CHECK(plain.val_bytes == static_cast<int64_t>(val.size()));
  const PreparedData again = read_prepared_data(plain.directory);
  CHECK(again.train_tokens == static_cast<int64_t>(train.size()));
  CHECK(again.tokenizer()->identity() == "bytes");
  fs::remove_all(dir);
}

TEST_CASE("prepare: bad inputs are clear errors", "[apps][prepare]") {
  const fs::path dir = scratch("errors");
  PrepareOptions o;
  o.out = (dir / "out").string();
  o.inputs = {(dir / "missing.txt").string()};
  CHECK(contains(error_message([&] { prepare_data(o); }), "missing.txt"));
  std::ofstream(dir / "short.txt") << "too short";
  o.inputs = {(dir / "short.txt").string()};
  CHECK(contains(error_message([&] { prepare_data(o); }), "too few"));
  // A gzip file cut in half (a broken download) is an error, not a silently shorter corpus.
  const std::string text = sample_text(2000);
  gzFile gz = gzopen((dir / "cut.gz").c_str(), "wb");
  REQUIRE(gz);
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  fs::resize_file(dir / "cut.gz", fs::file_size(dir / "cut.gz") / 2);
  CHECK(contains(error_message([&] { read_text_file((dir / "cut.gz").string()); }), "cannot decompress"));
  CHECK(contains(error_message([&] { read_prepared_data((dir / "nowhere").string()); }), "not found"));
  fs::create_directories(dir / "empty");
  CHECK(contains(error_message([&] { read_prepared_data((dir / "empty").string()); }), "meta.json"));
  // A meta.json key of the wrong type, or missing, is named.
  std::ofstream(dir / "empty" / "meta.json") << R"({"tokenizer": "bytes", "tokenizer_kind": "bytes", "vocab_size": "256"})";
  CHECK(contains(error_message([&] { read_prepared_data((dir / "empty").string()); }),
                 "key 'vocab_size' must be an integer, got \"256\""));
  std::ofstream(dir / "empty" / "meta.json") << R"({"tokenizer": "bytes", "tokenizer_kind": "bytes", "vocab_size": 256})";
  CHECK(contains(error_message([&] { read_prepared_data((dir / "empty").string()); }),
                 "key 'train_tokens' must be an integer, and is missing"));
  // A .gz that holds no gzip data is refused (zlib would pass its bytes through as if they were text).
  std::ofstream(dir / "fake.gz", std::ios::binary) << sample_text(500);
  CHECK(contains(error_message([&] { read_text_file((dir / "fake.gz").string()); }),
                 "is named as gzip-compressed (.gz/.dz) but does not hold gzip data"));
  fs::remove_all(dir);
}

TEST_CASE("prepare: a data directory's meta.json must agree with its shards", "[apps][prepare]") {
  const fs::path dir = scratch("lying");
  std::ofstream(dir / "a.txt", std::ios::binary) << sample_text(400);
  PrepareOptions o;
  o.seq_len = 64;
  o.inputs = {(dir / "a.txt").string()};
  o.out = (dir / "data").string();
  const PreparedData good = prepare_data(o);
  const fs::path meta_path = dir / "data" / "meta.json";
  const nlohmann::json meta = nlohmann::json::parse(std::ifstream(meta_path));
  // Each lie: one key of a true description changed.
  auto lie = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json edited = meta;
    edited[key] = value;
    std::ofstream(meta_path) << edited.dump(2);
    return error_message([&] { read_prepared_data(good.directory); });
  };
  CHECK(contains(lie("val_tokens", good.val_tokens + 1), "says " + std::to_string(good.val_tokens + 1) + " tokens for"));
  CHECK(contains(lie("train_tokens", 7), "which holds " + std::to_string(good.train_tokens)));
  CHECK(contains(lie("token_dtype", "uint32"), "key 'token_dtype' is uint32 but"));
  CHECK(contains(lie("token_dtype", "int8"), "key 'token_dtype' is 'int8'; known: uint16, uint32"));
  CHECK(contains(lie("tokenizer_kind", "tiktoken"), "key 'tokenizer_kind' is 'tiktoken'; known: bytes, sentencepiece"));
  CHECK(contains(lie("tokenizer_kind", "sentencepiece"), "tokenizer.model' is missing"));
  std::ofstream(meta_path) << meta.dump(2);
  CHECK(read_prepared_data(good.directory).val_tokens == good.val_tokens);
  fs::remove_all(dir);
}

TEST_CASE("prepare: files that are not text are refused, saying what they look like", "[apps][prepare]") {
  const fs::path dir = scratch("binary");
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return (dir / name).string();
  };
  auto refusal = [&](const std::string& path) {
    PrepareOptions o;
    o.out = (dir / "out").string();
    o.inputs = {path};
    const std::string message = error_message([&] { prepare_data(o); });
    CHECK(contains(message, "is not text"));
    CHECK(!fs::exists(dir / "out" / "meta.json"));
    return message;
  };
  // nanoGPT's prepare.py: the GPT-2 ids as raw uint16, no header.
  const std::vector<uint16_t> ids = {15496, 11, 995, 0, 50256, 464};
  const std::string nanogpt(reinterpret_cast<const char*>(ids.data()), ids.size() * 2);
  CHECK(contains(refusal(write("train.bin", nanogpt)), "nanoGPT's prepare.py writes train.bin and val.bin (as uint16: 6 tokens"));
  // llm.c's shards: 256 int32 (magic 20240520, version 1, count), then uint16 ids.
  std::vector<int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = 6;
  const std::string llmc = std::string(reinterpret_cast<const char*>(header.data()), 1024) + nanogpt;
  CHECK(contains(refusal(write("fineweb_val_000000.bin", llmc)), "an llm.c token shard (version 1: 6 uint16 GPT-2 token ids"));
  // Our own shard, outside its prepared directory.
  write_token_shard((dir / "ours.bin").string(), {1, 2, 3}, TokenDType::u16);
  CHECK(contains(refusal((dir / "ours.bin").string()), "megalodon.cpp token shard"));
  CHECK(contains(refusal(write("meta.pkl", std::string("\x80\x04\x95\x00\x00", 5))), "pickle"));
  CHECK(contains(refusal(write("utf16.txt", std::string("\xff\xfeh\x00i\x00", 6))), "UTF-16"));
  CHECK(contains(refusal(write("model.h5", std::string("\x89HDF\r\n\x1a\n\x00\x00", 10))), "HDF5"));
  // read_text_file refuses them too (the generate app's prompt and score files).
  CHECK(contains(error_message([&] { read_text_file((dir / "train.bin").string()); }), "nanoGPT"));
  fs::remove_all(dir);
}

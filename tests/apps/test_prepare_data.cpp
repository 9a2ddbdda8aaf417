// prepare_data (apps/lib/prepare_data.h): compressed and plain inputs give the same shards, the split and
// meta.json are as documented, and bad inputs are clear errors.
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "apps/lib/prepare_data.h"
#include "apps/lib/token_shards.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mgl_test_prepare_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

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
  fs::remove_all(dir);
}

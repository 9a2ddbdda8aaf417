// Token shards: round trips in both dtypes, the exact header layout, and the reader's errors for
// truncated files, bad magic, unsupported version/dtype, trailing bytes and checksum mismatches.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "apps/lib/token_shards.h"
#include "base/philox.h"
#include "core/fnv1a.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

std::string temp_path(const std::string& name) { return (process_scratch() / name).string(); }

std::vector<uint32_t> random_tokens(size_t count, uint32_t vocab, uint64_t seed) {
  std::vector<uint32_t> tokens(count);
  for (size_t i = 0; i < count; ++i) tokens[i] = philox::block(seed, 0, i).x % vocab;
  return tokens;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("token shards: dtype for a vocabulary", "[apps][token_shards]") {
  CHECK(token_dtype_for_vocab(256) == TokenDType::u16);
  CHECK(token_dtype_for_vocab(65536) == TokenDType::u16);
  CHECK(token_dtype_for_vocab(65537) == TokenDType::u32);
  CHECK(token_dtype_size(TokenDType::u16) == 2);
  CHECK(token_dtype_size(TokenDType::u32) == 4);
  CHECK(contains(error_message([] { token_dtype_for_vocab(0); }), "vocab size 0"));
}

TEST_CASE("token shards: write then read gives the same tokens, in both dtypes", "[apps][token_shards]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  for (auto [dtype, vocab] : {std::pair{TokenDType::u16, uint32_t{65536}}, std::pair{TokenDType::u32, 0xFFFFFFFFu}}) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{1001}}) {
      INFO("dtype " << static_cast<uint32_t>(dtype) << ", " << count << " tokens");
      const std::string path = temp_path("shard.bin");
      const std::vector<uint32_t> tokens = random_tokens(count, vocab, seed);
      write_token_shard(path, tokens, dtype);
      CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
      CHECK(std::filesystem::file_size(path) == kTokenShardHeaderBytes + count * token_dtype_size(dtype));
      const TokenShard shard = read_token_shard(path);
      CHECK(shard.dtype == dtype);
      CHECK(shard.tokens == tokens);
      std::filesystem::remove(path);
    }
  }
}

TEST_CASE("token shards: the header layout is the documented one", "[apps][token_shards]") {
  const std::string path = temp_path("layout.bin");
  write_token_shard(path, {1, 0x0203, 65535}, TokenDType::u16);
  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() == 32 + 3 * 2);
  CHECK(bytes.substr(0, 8) == "MGLTOKS1");
  uint32_t version, dtype;
  uint64_t count, checksum;
  std::memcpy(&version, &bytes[8], 4);
  std::memcpy(&dtype, &bytes[12], 4);
  std::memcpy(&count, &bytes[16], 8);
  std::memcpy(&checksum, &bytes[24], 8);
  CHECK(version == 1);
  CHECK(dtype == 1);
  CHECK(count == 3);
  const unsigned char payload[6] = {0x01, 0x00, 0x03, 0x02, 0xFF, 0xFF};  // little-endian uint16
  CHECK(std::memcmp(&bytes[32], payload, 6) == 0);
  CHECK(checksum == fnv1a64(payload, 6));
  // FNV-1a 64 reference values: the empty string is the offset basis; "a" is 0xaf63dc4c8601ec8c.
  CHECK(fnv1a64("", 0) == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  std::filesystem::remove(path);
}

TEST_CASE("token shards: a token too wide for uint16 is refused", "[apps][token_shards]") {
  const std::string path = temp_path("wide.bin");
  const std::string message = error_message([&] { write_token_shard(path, {5, 65536}, TokenDType::u16); });
  CHECK(contains(message, "token 65536"));
  CHECK(contains(message, "position 1"));
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("token shards: a failed write names the file and the OS's reason, and publishes nothing",
          "[apps][token_shards]") {
  const std::string path = (std::filesystem::path(temp_path("shard_write")) / "missing" / "train.bin").string();
  const std::string message = error_message([&] { write_token_shard(path, {1, 2, 3}, TokenDType::u16); });
  CHECK(contains(message, path + ".tmp"));
  CHECK(contains(message, "No such file or directory"));
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("token shards: corrupt files give errors naming the file and the problem", "[apps][token_shards]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const std::string path = temp_path("good.bin");
  write_token_shard(path, random_tokens(100, 50000, seed), TokenDType::u16);
  const std::string good = read_bytes(path);
  const std::string bad = temp_path("bad.bin");
  auto error_for = [&](const std::string& bytes) {
    write_bytes(bad, bytes);
    const std::string message = error_message([&] { read_token_shard(bad); });
    CHECK(contains(message, bad));
    return message;
  };

  CHECK(contains(error_for(good.substr(0, 20)), "truncated"));           // inside the header
  CHECK(contains(error_for(good.substr(0, good.size() - 1)), "truncated"));  // inside the tokens
  CHECK(contains(error_for(good + "x"), "unexpected bytes"));
  std::string magic = good;
  magic[3] = 'X';
  CHECK(contains(error_for(magic), "bad magic"));
  std::string version = good;
  version[8] = 7;
  CHECK(contains(error_for(version), "unsupported version 7"));
  std::string dtype = good;
  dtype[12] = 9;
  CHECK(contains(error_for(dtype), "dtype code 9"));
  std::string flipped = good;
  flipped[40] = static_cast<char>(flipped[40] ^ 0x10);
  CHECK(contains(error_for(flipped), "checksum mismatch"));
  CHECK(contains(error_message([&] { read_token_shard(path + ".missing"); }), "cannot open"));
  std::filesystem::remove(path);
  std::filesystem::remove(bad);
}

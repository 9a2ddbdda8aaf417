// Token shard files: writer and validating reader (format in token_shards.h).
#include "apps/lib/token_shards.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "apps/lib/files.h"
#include "base/error.h"
#include "core/fnv1a.h"

namespace mgl::apps {

// The format is little-endian and the code copies integers byte for byte.
static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

namespace {

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t dtype;
  uint64_t count;
  uint64_t checksum;
};
static_assert(sizeof(Header) == kTokenShardHeaderBytes, "the header has no padding");

// The tokens narrowed to their stored width, written to `out` (tokens.size() × the width bytes): the body of
// the file.
void pack(const std::vector<uint32_t>& tokens, TokenDType dtype, const std::string& path, char* out) {
  const size_t width = token_dtype_size(dtype);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (dtype == TokenDType::u16) {
      MGL_CHECK(tokens[i] <= std::numeric_limits<uint16_t>::max(), "token shard '", path, "': token ", tokens[i],
                " at position ", i, " does not fit uint16");
      const auto narrow = static_cast<uint16_t>(tokens[i]);
      std::memcpy(out + i * width, &narrow, width);
    } else {
      std::memcpy(out + i * width, &tokens[i], width);
    }
  }
}

}  // namespace

size_t token_dtype_size(TokenDType dtype) {
  switch (dtype) {
    case TokenDType::u16: return 2;
    case TokenDType::u32: return 4;
  }
  MGL_FAIL("unknown token dtype code ", static_cast<uint32_t>(dtype));
}

TokenDType token_dtype_for_vocab(int64_t vocab_size) {
  MGL_CHECK(vocab_size > 0 && vocab_size <= (int64_t{1} << 32), "token shards: vocab size ", vocab_size,
            " is not in [1, 2^32]");
  return vocab_size <= 65536 ? TokenDType::u16 : TokenDType::u32;
}

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, TokenDType dtype) {
  // The file's image, header then body, packed in place; written through write_file_atomically, so a reader
  // never sees half a shard and a failed write names the OS's reason ("No space left on device", ...).
  std::string contents(sizeof(Header) + tokens.size() * token_dtype_size(dtype), '\0');
  char* body = contents.data() + sizeof(Header);
  pack(tokens, dtype, path, body);
  Header header{};
  std::memcpy(header.magic, kTokenShardMagic, sizeof header.magic);
  header.version = kTokenShardVersion;
  header.dtype = static_cast<uint32_t>(dtype);
  header.count = tokens.size();
  header.checksum = fnv1a64(body, contents.size() - sizeof header);
  std::memcpy(contents.data(), &header, sizeof header);
  write_file_atomically(path, contents);
}

TokenShardInfo read_token_shard_info(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MGL_CHECK(in.good(), "token shard '", path, "': cannot open the file");
  in.seekg(0, std::ios::end);
  const uint64_t file_bytes = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  MGL_CHECK(file_bytes >= kTokenShardHeaderBytes, "token shard '", path, "': truncated: ", file_bytes,
            " bytes, shorter than the ", kTokenShardHeaderBytes, "-byte header");
  Header header{};
  in.read(reinterpret_cast<char*>(&header), sizeof header);
  MGL_CHECK(std::memcmp(header.magic, kTokenShardMagic, sizeof header.magic) == 0, "token shard '", path,
            "': bad magic (not a MGLTOKS1 token shard)");
  MGL_CHECK(header.version == kTokenShardVersion, "token shard '", path, "': unsupported version ", header.version,
            " (this build reads version ", kTokenShardVersion, ")");
  MGL_CHECK(header.dtype == static_cast<uint32_t>(TokenDType::u16) ||
                header.dtype == static_cast<uint32_t>(TokenDType::u32),
            "token shard '", path, "': unknown token dtype code ", header.dtype, " (1 = uint16, 2 = uint32)");
  const auto dtype = static_cast<TokenDType>(header.dtype);
  const uint64_t width = token_dtype_size(dtype);
  const uint64_t payload = file_bytes - kTokenShardHeaderBytes;
  MGL_CHECK(header.count <= payload / width, "token shard '", path, "': truncated: the header promises ",
            header.count, " tokens (", header.count * width, " bytes) but only ", payload, " bytes follow it");
  MGL_CHECK(payload == header.count * width, "token shard '", path, "': ", payload - header.count * width,
            " unexpected bytes after the ", header.count, " tokens");
  return {dtype, header.count, header.checksum};
}

TokenShard read_token_shard(const std::string& path) {
  const TokenShardInfo info = read_token_shard_info(path);
  const uint64_t width = token_dtype_size(info.dtype), payload = info.count * width;
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(kTokenShardHeaderBytes));
  std::vector<unsigned char> bytes(payload);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(payload));
  MGL_CHECK(in.good(), "token shard '", path, "': read error");
  const uint64_t checksum = fnv1a64(bytes.data(), bytes.size());
  MGL_CHECK(checksum == info.checksum, "token shard '", path, "': checksum mismatch (header ", info.checksum,
            ", data ", checksum, "): the file is corrupt");

  TokenShard shard;
  shard.dtype = info.dtype;
  shard.tokens.resize(info.count);
  for (uint64_t i = 0; i < info.count; ++i) {
    if (info.dtype == TokenDType::u16) {
      uint16_t narrow;
      std::memcpy(&narrow, &bytes[i * width], width);
      shard.tokens[i] = narrow;
    } else {
      std::memcpy(&shard.tokens[i], &bytes[i * width], width);
    }
  }
  return shard;
}

}  // namespace mgl::apps

#pragma once
// Token shards: a tokenized corpus (or its held-out part) as one binary file, e.g. train.bin.
//
// Format, version 1 (all integers little-endian; the header is 32 bytes, no padding):
//
//   offset  size  field
//        0     8  magic     the ASCII bytes "MGLTOKS1"
//        8     4  version   u32, 1
//       12     4  dtype     u32 token type code: 1 = uint16 (vocabularies up to 65536), 2 = uint32
//       16     8  count     u64, number of tokens
//       24     8  checksum  u64, FNV-1a 64 (core/fnv1a.h) over the count * token-size bytes below
//       32     -  tokens    count tokens of the dtype, in stream order
//
// The file length must be exactly 32 + count * token size. Writers write <path>.tmp and rename it to
// <path>, so a reader never sees a half-written shard under the final name. Readers check every
// field and throw mgl::Error naming the file and the problem (bad magic, unsupported version or dtype,
// truncated or oversized file, checksum mismatch).
#include <cstdint>
#include <string>
#include <vector>

namespace mgl::apps {

enum class TokenDType : uint32_t { u16 = 1, u32 = 2 };

constexpr char kTokenShardMagic[8] = {'M', 'G', 'L', 'T', 'O', 'K', 'S', '1'};
constexpr uint32_t kTokenShardVersion = 1;
constexpr size_t kTokenShardHeaderBytes = 32;

size_t token_dtype_size(TokenDType dtype);
// The narrowest dtype holding every id of a vocabulary of `vocab_size` (ids 0 .. vocab_size - 1).
TokenDType token_dtype_for_vocab(int64_t vocab_size);

struct TokenShard {
  TokenDType dtype = TokenDType::u16;
  std::vector<uint32_t> tokens;  // widened to u32 in memory whatever the stored dtype
};

// Writes `tokens` as `dtype` (throws mgl::Error if a token does not fit) to <path>.tmp, then renames.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, TokenDType dtype);

// Reads and validates a shard (see the format above).
TokenShard read_token_shard(const std::string& path);

// The header of a shard, validated against the file's size (not the checksum: no token is read).
struct TokenShardInfo {
  TokenDType dtype = TokenDType::u16;
  uint64_t count = 0;
  uint64_t checksum = 0;
};
TokenShardInfo read_token_shard_info(const std::string& path);

}  // namespace mgl::apps

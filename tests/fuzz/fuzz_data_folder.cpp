// Fuzz target: the prepared data folder (apps/lib/prepare_data.h read_prepared_data, apps/lib/token_shards.h,
// the data loader). The input is a folder's files joined by kPartSeparator (tests/fuzz/harness.h):
// meta.json, train.bin, val.bin and, when there is a fourth part, tokenizer.model. The folder is read as
// `train --data` reads it: meta.json checked against the shards, the tokenizer loaded, the training shard
// through the data loader (token ids checked against the vocabulary, batches drawn), the validation shard read.
// A folder that reads must hold what its meta.json promises.
// Before a shard is written its checksum is recomputed (when its header is complete), so that the fuzzer's
// changes to the tokens reach the checks behind the checksum, which no fuzzer inverts; tests/apps/
// test_token_shards.cpp tests the checksum itself. Seeds: the folders tests/fuzz/make_seeds.sh prepares.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "apps/lib/data_loader.h"
#include "apps/lib/prepare_data.h"
#include "apps/lib/token_shards.h"
#include "core/fnv1a.h"
#include "fuzz/harness.h"

namespace {

using namespace mgl::apps;

constexpr size_t kChecksumOffset = 24;  // the header's checksum field (apps/lib/token_shards.h)

std::string with_checksum(std::string_view shard) {
  std::string bytes(shard);
  if (bytes.size() < kTokenShardHeaderBytes) return bytes;
  const uint64_t checksum =
      mgl::fnv1a64(bytes.data() + kTokenShardHeaderBytes, bytes.size() - kTokenShardHeaderBytes);
  std::memcpy(bytes.data() + kChecksumOffset, &checksum, sizeof checksum);
  return bytes;
}

void read_folder(const std::string& directory) {
  const PreparedData data = read_prepared_data(directory);
  data.tokenizer();
  DataLoaderOptions options;
  options.seq_len = 4;
  options.vocab_size = data.vocab_size;
  DataLoader loader = DataLoader::from_shard(data.train_path(), options);
  mgl::fuzz::require(loader.token_count() == data.train_tokens, "train.bin holds another count than meta.json's");
  loader.next();
  loader.batch(loader.steps_per_epoch());  // the first batch of the second epoch
  const TokenShard val = read_token_shard(data.val_path());
  mgl::fuzz::require(static_cast<int64_t>(val.tokens.size()) == data.val_tokens,
                     "val.bin holds another count than meta.json's");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts =
      mgl::fuzz::split_parts({reinterpret_cast<const char*>(data), size});
  const char* names[] = {"data/meta.json", "data/train.bin", "data/val.bin", "data/tokenizer.model"};
  for (size_t i = 0; i < std::size(names); ++i) {
    if (i >= parts.size()) std::filesystem::remove(mgl::fuzz::scratch_path(names[i]));
    else mgl::fuzz::write_scratch_file(names[i], i == 1 || i == 2 ? with_checksum(parts[i]) : std::string(parts[i]));
  }
  mgl::fuzz::expect_success_or_error([] { read_folder(mgl::fuzz::scratch_path("data")); });
  return 0;
}

// DataLoader: deterministic windows from a token stream (the scheme is described in data_loader.h).
#include "apps/lib/data_loader.h"

#include <numeric>
#include <utility>

#include "apps/lib/token_shards.h"
#include "base/error.h"
#include "base/philox.h"

namespace mgl::apps {

namespace {

// 64 random bits: words 0 and 1 of Philox block `index` of the stream (seed, offset).
uint64_t random_u64(uint64_t seed, uint64_t offset, uint64_t index) {
  const philox::Uint4 u = philox::block(seed, offset, index);
  return (static_cast<uint64_t>(u.x) << 32) | u.y;
}

}  // namespace

DataLoader::DataLoader(std::vector<uint32_t> tokens, const DataLoaderOptions& options, std::string source)
    : tokens_(std::move(tokens)), options_(options), source_(std::move(source)) {
  const DataLoaderOptions& o = options_;
  MGL_CHECK(o.batch_size >= 1 && o.seq_len >= 1, "data loader '", source_, "': batch size ", o.batch_size,
            " and sequence length ", o.seq_len, " must be >= 1");
  MGL_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "data loader '", source_, "': rank ", o.rank,
            " is not in [0, world size ", o.world_size, ")");
  MGL_CHECK(o.vocab_size >= 1, "data loader '", source_, "': vocab size ", o.vocab_size, " must be >= 1");
  for (size_t i = 0; i < tokens_.size(); ++i) {
    MGL_CHECK(tokens_[i] < static_cast<uint64_t>(o.vocab_size), "data loader '", source_, "': token id ", tokens_[i],
              " at position ", i, " is >= the vocab size ", o.vocab_size);
  }
  const int64_t n = static_cast<int64_t>(tokens_.size());
  windows_per_epoch_ = n >= 1 ? (n - 1) / o.seq_len : 0;
  const int64_t per_step = o.batch_size * o.world_size;
  MGL_CHECK(windows_per_epoch_ >= per_step, "data loader '", source_, "': ", n, " tokens make ", windows_per_epoch_,
            " windows of ", o.seq_len + 1, " tokens, fewer than batch size ", o.batch_size, " x world size ",
            o.world_size, " = ", per_step, " per step");
  steps_per_epoch_ = windows_per_epoch_ / per_step;
}

DataLoader DataLoader::from_shard(const std::string& path, const DataLoaderOptions& options) {
  return DataLoader(read_token_shard(path).tokens, options, path);
}

void DataLoader::set_step(int64_t step) {
  MGL_CHECK(step >= 0, "data loader '", source_, "': step ", step, " must be >= 0");
  step_ = step;
}

void DataLoader::prepare_epoch(int64_t epoch) {
  if (epoch == cached_epoch_) return;
  const auto offset = static_cast<uint64_t>(epoch);
  // Block 0 of the epoch's stream draws the shift; blocks 1 .. M-1 drive Fisher-Yates (block i picks
  // the partner of position i). The modulo bias is below M / 2^64: negligible.
  const int64_t slack = static_cast<int64_t>(tokens_.size()) - 1 - windows_per_epoch_ * options_.seq_len;
  shift_ = static_cast<int64_t>(random_u64(options_.seed, offset, 0) % static_cast<uint64_t>(slack + 1));
  order_.resize(windows_per_epoch_);
  std::iota(order_.begin(), order_.end(), int64_t{0});
  for (int64_t i = windows_per_epoch_ - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(random_u64(options_.seed, offset, i) % static_cast<uint64_t>(i + 1));
    std::swap(order_[i], order_[j]);
  }
  cached_epoch_ = epoch;
}

std::vector<int64_t> DataLoader::window_starts(int64_t step) {
  MGL_CHECK(step >= 0, "data loader '", source_, "': step ", step, " must be >= 0");
  prepare_epoch(step / steps_per_epoch_);
  const int64_t per_step = options_.batch_size * options_.world_size;
  const int64_t first_slot = (step % steps_per_epoch_) * per_step;
  std::vector<int64_t> starts(options_.batch_size);
  for (int64_t i = 0; i < options_.batch_size; ++i) {
    const int64_t slot = first_slot + options_.rank + options_.world_size * i;
    starts[i] = shift_ + order_[slot] * options_.seq_len;
  }
  return starts;
}

Batch DataLoader::batch(int64_t step) {
  const std::vector<int64_t> starts = window_starts(step);
  const int64_t b = options_.batch_size, l = options_.seq_len;
  Batch out{Tensor::empty({b, l}, DType::i64), Tensor::empty({b, l}, DType::i64)};
  int64_t* inputs = out.inputs.data<int64_t>();
  int64_t* targets = out.targets.data<int64_t>();
  for (int64_t row = 0; row < b; ++row) {
    const uint32_t* window = tokens_.data() + starts[row];
    for (int64_t t = 0; t < l; ++t) {
      inputs[row * l + t] = window[t];
      targets[row * l + t] = window[t + 1];
    }
  }
  return out;
}

Batch DataLoader::next() {
  Batch out = batch(step_);
  ++step_;
  return out;
}

}  // namespace mgl::apps

// DataLoader: batch layout (targets = inputs shifted by one), determinism in (seed, step), disjoint
// windows across ranks, resuming from a step counter, coverage of the whole stream, and errors.
#include <algorithm>
#include <filesystem>
#include <set>

#include "apps/lib/data_loader.h"
#include "apps/lib/token_shards.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

// Token i is i mod vocab, so a window's start can be read back from its first token.
std::vector<uint32_t> counting_tokens(size_t count, uint32_t vocab) {
  std::vector<uint32_t> tokens(count);
  for (size_t i = 0; i < count; ++i) tokens[i] = static_cast<uint32_t>(i % vocab);
  return tokens;
}

DataLoaderOptions options(int64_t batch, int64_t seq_len, uint64_t seed, int64_t rank = 0, int64_t world = 1) {
  return {.batch_size = batch, .seq_len = seq_len, .vocab_size = 1 << 20, .seed = seed, .rank = rank, .world_size = world};
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.inputs.to_vector<int64_t>() == b.inputs.to_vector<int64_t>() &&
         a.targets.to_vector<int64_t>() == b.targets.to_vector<int64_t>();
}

}  // namespace

TEST_CASE("data loader: batches are windows of the stream, targets shifted by one", "[apps][data_loader]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t b = 3, l = 7;
  DataLoader loader(counting_tokens(1000, 1 << 20), options(b, l, seed), "counting");
  CHECK(loader.windows_per_epoch() == 999 / l);
  CHECK(loader.steps_per_epoch() == (999 / l) / b);
  for (int64_t step : {0, 1, 5, 100}) {
    const Batch batch = loader.batch(step);
    REQUIRE(batch.inputs.shape() == Shape{b, l});
    REQUIRE(batch.targets.shape() == Shape{b, l});
    CHECK(batch.inputs.dtype() == DType::i64);
    const std::vector<int64_t> starts = loader.window_starts(step);
    const auto inputs = batch.inputs.to_vector<int64_t>();
    const auto targets = batch.targets.to_vector<int64_t>();
    for (int64_t row = 0; row < b; ++row) {
      CHECK(starts[row] + l < 1000);
      for (int64_t t = 0; t < l; ++t) {
        CHECK(inputs[row * l + t] == starts[row] + t);
        CHECK(targets[row * l + t] == starts[row] + t + 1);
      }
    }
  }
}

TEST_CASE("data loader: same seed and step give the same batch; another seed differs", "[apps][data_loader]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto tokens = counting_tokens(5000, 1 << 20);
  DataLoader a(tokens, options(4, 16, seed), "a");
  DataLoader b(tokens, options(4, 16, seed), "b");
  DataLoader other(tokens, options(4, 16, seed + 1), "other");
  bool any_difference = false;
  for (int64_t step : {0, 3, 77, 78, 500}) {  // 78 steps per epoch: 77/78 cross an epoch
    CHECK(same_batch(a.batch(step), b.batch(step)));
    any_difference = any_difference || !same_batch(a.batch(step), other.batch(step));
  }
  CHECK(any_difference);
  CHECK(same_batch(a.batch(3), a.batch(3)));  // batch() does not move the counter
  CHECK(a.step() == 0);
}

TEST_CASE("data loader: ranks of one step never share a window", "[apps][data_loader]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const int64_t world = 4, b = 5, l = 8;
  const auto tokens = counting_tokens(2000, 1 << 20);  // 249 windows, 12 steps per epoch
  std::vector<DataLoader> ranks;
  for (int64_t r = 0; r < world; ++r) ranks.emplace_back(tokens, options(b, l, seed, r, world), "rank");
  for (int64_t step = 0; step < 40; ++step) {
    std::set<int64_t> starts;
    for (DataLoader& loader : ranks) {
      for (int64_t start : loader.window_starts(step)) starts.insert(start);
    }
    CHECK(static_cast<int64_t>(starts.size()) == world * b);
    // Windows start L apart (one shared token) or more: none overlaps another's inputs.
    for (auto it = std::next(starts.begin()); it != starts.end(); ++it) CHECK(*it - *std::prev(it) >= l);
  }
}

TEST_CASE("data loader: resuming at step k continues exactly", "[apps][data_loader]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  const auto tokens = counting_tokens(3000, 1 << 20);
  DataLoader continuous(tokens, options(2, 10, seed, 1, 3), "continuous");
  std::vector<Batch> expected;
  for (int step = 0; step < 120; ++step) expected.push_back(continuous.next());
  CHECK(continuous.step() == 120);

  for (int64_t k : {0, 1, 49, 50, 119}) {  // 49 steps per epoch: 49 and 50 straddle a new epoch
    DataLoader resumed(tokens, options(2, 10, seed, 1, 3), "resumed");
    resumed.set_step(k);
    for (int64_t step = k; step < 120; ++step) {
      INFO("resumed at " << k << ", step " << step);
      CHECK(same_batch(resumed.next(), expected[step]));
    }
  }
}

TEST_CASE("data loader: over many steps every part of the stream is visited", "[apps][data_loader]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  // 312 windows of 32 + 1 tokens and 3 slack tokens, so the cut shifts by 0..3 between epochs; 10
  // windows per step, so 2 windows of each epoch are skipped.
  const int64_t l = 32, b = 5, world = 2, slack = 3, epochs = 100;
  const int64_t n = 312 * l + 1 + slack;
  const auto tokens = counting_tokens(n, 1 << 20);
  std::vector<int> seen(n, 0);
  for (int64_t r = 0; r < world; ++r) {
    DataLoader loader(tokens, options(b, l, seed, r, world), "coverage");
    REQUIRE(loader.steps_per_epoch() == 31);
    for (int64_t step = 0; step < epochs * loader.steps_per_epoch(); ++step) {
      for (int64_t start : loader.window_starts(step))
        for (int64_t t = start; t <= start + l; ++t) ++seen[t];
    }
  }
  // Every token, the edges included (seen only in epochs whose cut reaches them), is visited. A token
  // is in at most two windows of an epoch (as the last target of one and the first input of the
  // next); one away from the edges misses an epoch only when its window is among the 2 skipped.
  CHECK(std::count(seen.begin(), seen.end(), 0) == 0);
  CHECK(*std::max_element(seen.begin(), seen.end()) <= 2 * epochs);
  CHECK(*std::min_element(seen.begin() + slack, seen.end() - slack) >= epochs - 10);
}

TEST_CASE("data loader: reads a token shard", "[apps][data_loader]") {
  const std::string path = (process_scratch() / "loader.bin").string();
  write_token_shard(path, counting_tokens(100, 256), TokenDType::u16);
  DataLoaderOptions o = options(2, 4, 9);
  o.vocab_size = 256;
  DataLoader loader = DataLoader::from_shard(path, o);
  CHECK(loader.token_count() == 100);
  const Batch batch = loader.next();
  CHECK(batch.targets.to_vector<int64_t>()[0] == batch.inputs.to_vector<int64_t>()[0] + 1);
  std::filesystem::remove(path);
}

TEST_CASE("data loader: bad ids and bad options are errors", "[apps][data_loader]") {
  std::vector<uint32_t> tokens = counting_tokens(200, 50);
  tokens[137] = 50;
  DataLoaderOptions o = options(2, 4, 1);
  o.vocab_size = 50;
  const std::string message = error_message([&] { DataLoader(tokens, o, "ids.bin"); });
  CHECK(contains(message, "token id 50"));
  CHECK(contains(message, "position 137"));
  CHECK(contains(message, "ids.bin"));

  const auto good = counting_tokens(41, 50);  // 10 windows of 4 + 1 tokens
  o.vocab_size = 50;
  CHECK(contains(error_message([&] { DataLoader(good, options(6, 4, 1, 0, 2), "small"); }), "10 windows"));
  CHECK(contains(error_message([&] { DataLoader(good, options(1, 4, 1, 2, 2), "x"); }), "rank 2"));
  CHECK(contains(error_message([&] { DataLoader(good, options(0, 4, 1), "x"); }), "batch size 0"));
  CHECK(contains(error_message([&] { DataLoader({}, options(1, 4, 1), "empty"); }), "0 windows"));
  DataLoader loader(good, options(2, 4, 1, 1, 5), "exact");  // exactly one step per epoch
  CHECK(loader.steps_per_epoch() == 1);
  CHECK(contains(error_message([&] { loader.set_step(-1); }), "step -1"));
}

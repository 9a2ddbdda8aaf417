// prepare: turns text files into token shards for training.
//
//   prepare --input FILE... --out DIR [--tokenizer bytes|sentencepiece] [--vocab-size N]
//           [--tokenizer-model FILE] [--val-fraction 0.01] [--seq-len 1024]
//
// Reads the text files in order, tokenizes each (followed by the tokenizer's end-of-sequence id when it
// has one, as a document separator) and writes into DIR:
//   train.bin       the token stream but its held-out tail (token shard, apps/lib/token_shards.h)
//   val.bin         the held-out tail: the last val-fraction of the stream, and at least one window of
//                   seq-len + 1 tokens so that validation always has a full sequence
//   tokenizer.model (sentencepiece only) the model: trained on the inputs with --vocab-size pieces, or a
//                   copy of --tokenizer-model
//   meta.json       the tokenizer identity, vocabulary size, special ids, token dtype and counts;
//                   written last, so its presence means the directory is complete
// Errors go to stderr with a non-zero exit status.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/lib/token_shards.h"
#include "apps/lib/tokenizer.h"
#include "core/error.h"

using namespace mgl;
using namespace mgl::apps;
namespace fs = std::filesystem;

namespace {

struct Settings {
  std::vector<std::string> inputs;
  std::string out;
  std::string tokenizer = "bytes";
  std::optional<int> vocab_size;
  std::string tokenizer_model;
  double val_fraction = 0.01;
  int64_t seq_len = 1024;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MGL_CHECK(in.good(), "cannot open input file '", path, "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The tokenizer the settings ask for; a SentencePiece model ends up in DIR/tokenizer.model.
std::unique_ptr<Tokenizer> tokenizer_for(const Settings& s) {
  if (s.tokenizer == "bytes") {
    MGL_CHECK(!s.vocab_size || *s.vocab_size == 256, "the bytes tokenizer has vocab size 256, not ", *s.vocab_size);
    MGL_CHECK(s.tokenizer_model.empty(), "--tokenizer-model needs --tokenizer sentencepiece");
    return std::make_unique<ByteTokenizer>();
  }
  const fs::path model = fs::path(s.out) / "tokenizer.model";
  if (!s.tokenizer_model.empty()) {
    MGL_CHECK(!s.vocab_size, "--vocab-size trains a new model; it cannot be combined with --tokenizer-model");
    std::unique_ptr<Tokenizer> loaded = load_sentencepiece(s.tokenizer_model);  // fails early if unusable
    if (!fs::exists(model) || !fs::equivalent(s.tokenizer_model, model)) {
      fs::copy_file(s.tokenizer_model, model, fs::copy_options::overwrite_existing);
    }
    return loaded;
  }
  const int vocab_size = s.vocab_size.value_or(32000);
  const std::string trained = train_sentencepiece(s.inputs, (fs::path(s.out) / "tokenizer").string(), vocab_size);
  std::printf("prepare: trained a SentencePiece model (at most %d pieces) on %zu file(s) -> %s\n", vocab_size,
              s.inputs.size(), trained.c_str());
  return load_sentencepiece(trained);
}

void write_json_atomically(const fs::path& path, const nlohmann::json& json) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << json.dump(2) << "\n";
    out.close();
    MGL_CHECK(out.good(), "writing '", temporary.string(), "' failed");
  }
  fs::rename(temporary, path);
}

int run(const Settings& s) {
  MGL_CHECK(s.val_fraction > 0 && s.val_fraction < 1, "--val-fraction must be in (0, 1), got ", s.val_fraction);
  MGL_CHECK(s.seq_len >= 1, "--seq-len must be >= 1, got ", s.seq_len);
  for (const std::string& input : s.inputs) MGL_CHECK(fs::is_regular_file(input), "input file '", input, "' not found");
  fs::create_directories(s.out);
  const std::unique_ptr<Tokenizer> tokenizer = tokenizer_for(s);

  std::vector<uint32_t> stream;
  for (const std::string& input : s.inputs) {
    for (int32_t id : tokenizer->encode(read_file(input))) stream.push_back(static_cast<uint32_t>(id));
    if (tokenizer->eos_id()) stream.push_back(static_cast<uint32_t>(*tokenizer->eos_id()));
  }
  const auto total = static_cast<int64_t>(stream.size());
  const int64_t window = s.seq_len + 1;
  const int64_t val_count = std::max(window, static_cast<int64_t>(std::ceil(s.val_fraction * total)));
  MGL_CHECK(total - val_count >= window, "the inputs give ", total, " tokens: too few for a validation split of ",
            val_count, " tokens and at least one training window of ", window, " tokens (seq-len ", s.seq_len, ")");

  const TokenDType dtype = token_dtype_for_vocab(tokenizer->vocab_size());
  const std::vector<uint32_t> train(stream.begin(), stream.end() - val_count);
  const std::vector<uint32_t> val(stream.end() - val_count, stream.end());
  write_token_shard((fs::path(s.out) / "train.bin").string(), train, dtype);
  write_token_shard((fs::path(s.out) / "val.bin").string(), val, dtype);

  auto special = [](std::optional<int32_t> id) { return id ? nlohmann::json(*id) : nlohmann::json(nullptr); };
  nlohmann::json meta = {
      {"format", "MGLTOKS1"},
      {"tokenizer", tokenizer->identity()},
      {"tokenizer_kind", s.tokenizer},
      {"vocab_size", tokenizer->vocab_size()},
      {"bos_id", special(tokenizer->bos_id())},
      {"eos_id", special(tokenizer->eos_id())},
      {"token_dtype", dtype == TokenDType::u16 ? "uint16" : "uint32"},
      {"train_tokens", train.size()},
      {"val_tokens", val.size()},
      {"seq_len", s.seq_len},
      {"val_fraction", s.val_fraction},
      {"inputs", s.inputs},
  };
  if (s.tokenizer == "sentencepiece") meta["tokenizer_model"] = "tokenizer.model";
  write_json_atomically(fs::path(s.out) / "meta.json", meta);
  std::printf("prepare: %s, vocab %lld: %zu train + %zu val tokens -> %s\n", tokenizer->identity().c_str(),
              static_cast<long long>(tokenizer->vocab_size()), train.size(), val.size(), s.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"prepare: tokenize text files into train/val token shards"};
  Settings s;
  int vocab_size = 0;
  app.add_option("--input", s.inputs, "text files, read in order")->required()->expected(1, -1);
  app.add_option("--out", s.out, "output directory (created if missing)")->required();
  app.add_option("--tokenizer", s.tokenizer, "bytes or sentencepiece")
      ->check(CLI::IsMember({"bytes", "sentencepiece"}));
  CLI::Option* vocab_option =
      app.add_option("--vocab-size", vocab_size, "pieces of the SentencePiece model to train (default 32000)");
  app.add_option("--tokenizer-model", s.tokenizer_model, "an existing SentencePiece .model to use instead of training");
  app.add_option("--val-fraction", s.val_fraction, "held-out fraction of the token stream (the tail)");
  app.add_option("--seq-len", s.seq_len, "training sequence length: the validation split holds at least one window");
  CLI11_PARSE(app, argc, argv);
  if (vocab_option->count() > 0) s.vocab_size = vocab_size;
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prepare: %s\n", e.what());
    return 1;
  }
}

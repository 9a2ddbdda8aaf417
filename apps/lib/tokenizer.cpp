// Tokenizers: the byte-level one, and SentencePiece behind MGL_WITH_SENTENCEPIECE (see tokenizer.h).
#include "apps/lib/tokenizer.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "apps/lib/files.h"
#include "base/error.h"
#include "core/fnv1a.h"

#ifdef MGL_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace mgl::apps {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    MGL_CHECK(ids[i] >= 0 && ids[i] < 256, "byte tokenizer: id ", ids[i], " at position ", i,
              " is outside the vocabulary [0, 256)");
    text[i] = static_cast<char>(ids[i]);
  }
  return text;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& model_path) {
  if (kind == "bytes") return std::make_unique<ByteTokenizer>();
  if (kind == "sentencepiece") return load_sentencepiece(model_path);
  MGL_FAIL("unknown tokenizer '", kind, "' (expected bytes or sentencepiece)");
}

void check_tokenizer_identity(const Tokenizer& tokenizer, const std::string& expected) {
  MGL_CHECK(tokenizer.identity() == expected, "tokenizer mismatch: the model was trained with '", expected,
            "', this tokenizer is '", tokenizer.identity(), "'");
}

std::unique_ptr<Tokenizer> tokenizer_from_identity(const std::string& identity, const std::string& model_bytes) {
  std::unique_ptr<Tokenizer> tokenizer;
  if (identity == "bytes") {
    tokenizer = std::make_unique<ByteTokenizer>();
  } else if (identity.rfind("sentencepiece:", 0) == 0) {
    MGL_CHECK(!model_bytes.empty(), "tokenizer '", identity, "' comes without its SentencePiece model bytes");
    tokenizer = sentencepiece_from_bytes(model_bytes);
  } else {
    MGL_FAIL("unknown tokenizer identity '", identity, "' (expected bytes or sentencepiece:<size>:<hash>)");
  }
  check_tokenizer_identity(*tokenizer, identity);
  return tokenizer;
}

#ifdef MGL_WITH_SENTENCEPIECE

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `bytes`: a serialized model (the contents of a .model file); `source` names it in errors.
  SentencePieceTokenizer(std::string bytes, const std::string& source) : bytes_(std::move(bytes)) {
    // SentencePiece reports a bad model by its status, except where its trie library (darts-clone) throws
    // instead, e.g. for an empty piece (found by tests/fuzz/fuzz_tokenizer.cpp).
    sentencepiece::util::Status status;
    try {
      status = processor_.LoadFromSerializedProto(bytes_);
    } catch (const std::exception& e) {
      MGL_FAIL("sentencepiece: cannot load ", source, ": ", e.what());
    }
    MGL_CHECK(status.ok(), "sentencepiece: cannot load ", source, ": ", status.ToString());
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016" PRIx64, fnv1a64(bytes_.data(), bytes_.size()));
    identity_ = "sentencepiece:" + std::to_string(bytes_.size()) + ":" + hash;
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    MGL_CHECK(status.ok(), "sentencepiece: encode failed: ", status.ToString());
    return {ids.begin(), ids.end()};
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    for (size_t i = 0; i < ids.size(); ++i) {
      MGL_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), "sentencepiece: id ", ids[i], " at position ", i,
                " is outside the vocabulary [0, ", vocab_size(), ")");
    }
    std::string text;
    const auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    MGL_CHECK(status.ok(), "sentencepiece: decode failed: ", status.ToString());
    return text;
  }

  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  std::string identity() const override { return identity_; }
  // SentencePiece reports a disabled special id as -1.
  std::optional<int32_t> bos_id() const override { return special(processor_.bos_id()); }
  std::optional<int32_t> eos_id() const override { return special(processor_.eos_id()); }
  std::string model_bytes() const override { return bytes_; }
  // A segmentation of the whole text: cut only after newlines (apps/lib/token_source.h).
  bool cuts_anywhere() const override { return false; }

 private:
  static std::optional<int32_t> special(int id) { return id < 0 ? std::nullopt : std::optional<int32_t>(id); }

  std::string bytes_;
  sentencepiece::SentencePieceProcessor processor_;
  std::string identity_;
};

// Feeds the trainer the lines of several files in order (no comma-separated path list, so any file
// name works).
class FileLines final : public sentencepiece::SentenceIterator {
 public:
  explicit FileLines(const std::vector<std::string>& files) : files_(files) { Next(); }
  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }
  void Next() override {
    while (true) {
      if (in_.is_open() && std::getline(in_, line_)) return;
      if (next_file_ == files_.size()) {
        done_ = true;
        return;
      }
      in_ = std::ifstream(files_[next_file_]);
      MGL_CHECK(in_.good(), "sentencepiece training: cannot open text file '", files_[next_file_], "'");
      ++next_file_;
    }
  }

 private:
  const std::vector<std::string>& files_;
  size_t next_file_ = 0;
  std::ifstream in_;
  std::string line_;
  bool done_ = false;
};

}  // namespace

bool sentencepiece_available() { return true; }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(read_file(model_path, "SentencePiece model file"),
                                                  "model file '" + model_path + "'");
}

std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes) {
  return std::make_unique<SentencePieceTokenizer>(model_bytes, "a serialized model of " +
                                                                   std::to_string(model_bytes.size()) + " bytes");
}

std::string train_sentencepiece(const std::vector<std::string>& text_files, const std::string& model_prefix,
                                int vocab_size) {
  MGL_CHECK(!text_files.empty(), "sentencepiece training: no text files");
  for (const std::string& file : text_files) {
    MGL_CHECK(std::ifstream(file).good(), "sentencepiece training: cannot open text file '", file, "'");
  }
  MGL_CHECK(vocab_size > 259, "sentencepiece training: vocab size ", vocab_size,
            " must exceed 259 (256 byte pieces + <unk>, <s>, </s>)");
  const std::unordered_map<std::string, std::string> options = {
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", "unigram"},
      {"byte_fallback", "true"},                  // unknown characters become byte pieces, never <unk>
      {"normalization_rule_name", "identity"},    // keep the text exactly as written
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"hard_vocab_limit", "false"},              // a small corpus may not support the full vocab
      {"input_sentence_size", "2000000"},         // sample at most this many lines from big corpora
      {"shuffle_input_sentence", "true"},
  };
  FileLines lines(text_files);
  const auto status = sentencepiece::SentencePieceTrainer::Train(options, &lines);
  MGL_CHECK(status.ok(), "sentencepiece training into '", model_prefix, ".model' failed: ", status.ToString());
  return model_prefix + ".model";
}

#else  // no SentencePiece in this build

namespace {
[[noreturn]] void no_sentencepiece(const std::string& what) {
  MGL_FAIL(what, ": this build has no SentencePiece (install libsentencepiece-dev, see tools/install_deps.sh, "
           "and re-run cmake)");
}
}  // namespace

bool sentencepiece_available() { return false; }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  no_sentencepiece("loading SentencePiece model '" + model_path + "'");
}

std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes) {
  no_sentencepiece("loading a serialized SentencePiece model of " + std::to_string(model_bytes.size()) + " bytes");
}

std::string train_sentencepiece(const std::vector<std::string>&, const std::string& model_prefix, int) {
  no_sentencepiece("training SentencePiece model '" + model_prefix + ".model'");
}

#endif

}  // namespace mgl::apps

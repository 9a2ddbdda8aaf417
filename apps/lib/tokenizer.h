#pragma once
// Tokenizers: text <-> token ids. Two kinds:
//
//  * "bytes": the built-in byte-level tokenizer. Vocabulary 256, id = byte value, so any byte
//    string (UTF-8 or not) round-trips exactly. No BOS/EOS ids.
//  * "sentencepiece": a SentencePiece model (.model file) through the SentencePiece library, which
//    is optional at build time (MGL_WITH_SENTENCEPIECE); requesting one in a build without it throws
//    an mgl::Error that says so.
//
// identity() names the tokenizer exactly enough to store in checkpoints and data metadata and to
// refuse mixing data and models made with different tokenizers: "bytes", or
// "sentencepiece:<size>:<fnv1a64 of the model file, 16 hex digits>".
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mgl::apps {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Throws mgl::Error for an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string identity() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // The serialized model that rebuilds this tokenizer (sentencepiece_from_bytes); empty for "bytes".
  // Checkpoints store it (TrainingState::tokenizer_model) so that they alone can generate text.
  virtual std::string model_bytes() const = 0;
  // Whether encode(a + b) == encode(a) + encode(b) for any texts a and b: a long text may then be
  // encoded in blocks cut anywhere (apps/lib/token_source.h); otherwise it is cut after newlines.
  virtual bool cuts_anywhere() const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return 256; }
  std::string identity() const override { return "bytes"; }
  std::optional<int32_t> bos_id() const override { return std::nullopt; }
  std::optional<int32_t> eos_id() const override { return std::nullopt; }
  std::string model_bytes() const override { return {}; }
  bool cuts_anywhere() const override { return true; }  // every byte is encoded alone
};

// Whether this build has the SentencePiece library.
bool sentencepiece_available();

// Loads a SentencePiece .model file. Throws mgl::Error naming the file if it cannot be loaded, or
// if this build has no SentencePiece.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// The same from the bytes of a .model file (a serialized ModelProto), e.g. kept in a checkpoint.
std::unique_ptr<Tokenizer> sentencepiece_from_bytes(const std::string& model_bytes);

// Trains a SentencePiece unigram model on the lines of `text_files` with the library's trainer and
// writes <model_prefix>.model (and the human-readable <model_prefix>.vocab); returns the .model path.
// The model keeps text as it is (identity normalization, spaces kept) and falls back to bytes for
// characters outside its vocabulary (newlines and tabs included), so decode(encode(text)) == text. The
// vocabulary must hold the 256 byte pieces and <unk>, <s>, </s>: vocab_size > 259. The vocabulary is
// a soft limit: a small corpus may give fewer pieces (vocab_size() of the loaded model is the truth).
std::string train_sentencepiece(const std::vector<std::string>& text_files, const std::string& model_prefix,
                                int vocab_size);

// "bytes" -> ByteTokenizer; "sentencepiece" -> load_sentencepiece(model_path). Throws mgl::Error for
// any other kind.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& kind, const std::string& model_path = "");

// The tokenizer a checkpoint names: `identity` (TrainingState::tokenizer) and the serialized model
// (TrainingState::tokenizer_model, empty for "bytes"). Throws mgl::Error when the identity names no
// known tokenizer, when a SentencePiece identity comes without model bytes, or when the bytes
// build a tokenizer of another identity (check_tokenizer_identity).
std::unique_ptr<Tokenizer> tokenizer_from_identity(const std::string& identity, const std::string& model_bytes);

// Throws mgl::Error ("tokenizer mismatch: ...") unless tokenizer.identity() == expected.
void check_tokenizer_identity(const Tokenizer& tokenizer, const std::string& expected);

}  // namespace mgl::apps

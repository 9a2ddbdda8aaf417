#pragma once
// Token streams read a block at a time, so that scoring a text (apps/lib/scoring.h) holds a block of
// it, never the whole: a text file is read and tokenized as the scoring needs its ids.
//
//   TokenSource     a stream of ids handed out in blocks;
//   TokenVector     ids already in memory;
//   TextFileTokens  a text file, tokenized a block at a time into the ids of the whole text (below);
//   TokenWindow     the ids [begin, end) of a stream: read as far as asked, dropped before a point.
//
// Cutting a text into blocks keeps its ids when no token can span a cut. The byte tokenizer encodes
// every byte alone (Tokenizer::cuts_anywhere), so a block ends anywhere. SentencePiece segments a text
// as a whole (the most likely sequence of pieces), so a block ends after a newline: no piece of a
// model that train_sentencepiece makes holds a newline (it learns from lines; a newline is a byte
// piece of its own, apps/lib/tokenizer.h), so every segmentation is cut there and the best one of
// the text is the best one of each block, joined. SentencePiece also puts a dummy "▁" before the text
// it encodes, which only the first block may have: a later block is encoded after one newline of
// context whose ids (the dummy piece, then the newline's) are dropped, checked to be the ids of a lone
// newline. One difference remains: SentencePiece sums the scores of the pieces in single precision
// from the start of what it encodes, so on a long text (sums past ~10^6) rounding can decide a
// near-tie between two segmentations, and decide it differently in the whole text and in a block,
// whose sums stay small.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "apps/lib/tokenizer.h"
#include "core/tensor.h"

namespace mgl::apps {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Appends the next block of the stream (at least one id) to `ids`; false, appending nothing, at
  // its end.
  virtual bool read(std::vector<int32_t>& ids) = 0;
  // The number of ids in the stream, when it is known before the stream is read.
  virtual std::optional<int64_t> size() const { return std::nullopt; }
};

class TokenVector final : public TokenSource {
 public:
  static constexpr int64_t kBlockIds = int64_t{1} << 16;
  // `ids` must outlive the source.
  explicit TokenVector(const std::vector<int32_t>& ids) : ids_(ids) {}
  bool read(std::vector<int32_t>& ids) override;
  std::optional<int64_t> size() const override { return static_cast<int64_t>(ids_.size()); }

 private:
  const std::vector<int32_t>& ids_;
  size_t next_ = 0;
};

// A text file as a document of the stream that `prepare` writes: the tokenizer's end-of-sequence id
// (when it has one), then the ids of the text. It holds a block of text (block_bytes, or for
// SentencePiece up to the end of a longer line) and its ids.
class TextFileTokens final : public TokenSource {
 public:
  static constexpr int64_t kBlockBytes = int64_t{1} << 16;
  // Opens `path` and reads its first block, so that a file that cannot be read fails here: mgl::Error
  // "cannot read text file '<path>': <reason>". `tokenizer` must outlive the source.
  TextFileTokens(const std::string& path, const Tokenizer& tokenizer, int64_t block_bytes = kBlockBytes);
  // Throws mgl::Error when the file cannot be read, or no longer has the size it had when opened.
  bool read(std::vector<int32_t>& ids) override;

  int64_t bytes() const { return bytes_; }  // the file's size
  int64_t bytes_read() const { return bytes_read_; }
  // The bytes of the text whose tokens a scoring predicts (bits per byte): all of them after an
  // end-of-sequence id, otherwise all but the first token's.
  int64_t predicted_bytes() const { return predicted_bytes_; }

 private:
  struct CloseFile {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  // The ids of the next block of text (possibly none); nullopt at the end of the file.
  std::optional<std::vector<int32_t>> encode_block();

  std::string path_;
  const Tokenizer& tokenizer_;
  int64_t block_bytes_;
  std::unique_ptr<std::FILE, CloseFile> file_;
  int64_t bytes_ = 0, bytes_read_ = 0, predicted_bytes_ = 0;
  std::string text_;              // read but not yet encoded: the start of a line (SentencePiece)
  std::vector<int32_t> next_;     // the ids of the block read() hands out next
  std::vector<int32_t> newline_;  // the ids of a lone newline: the context a later block is encoded after
  bool first_block_ = true;
};

// The ids [begin(), end()) of a source's stream, each checked to be in [0, vocab). It holds what its
// reader still needs and one block more.
class TokenWindow {
 public:
  // `source` must outlive the window.
  TokenWindow(TokenSource& source, int64_t vocab) : source_(source), vocab_(vocab) {}
  // Reads until the window reaches stream position `end` or the stream ends. The ids before position
  // `keep` are no longer needed: they are dropped as more are read (and when `keep` lies beyond what
  // was read, the ids up to it are read and dropped). Throws mgl::Error naming an id outside the
  // vocabulary and its position.
  void read_to(int64_t end, int64_t keep);
  bool complete() const { return complete_; }  // the stream has ended: end() is its length
  int64_t begin() const { return begin_; }
  int64_t end() const { return begin_ + static_cast<int64_t>(ids_.size()); }
  // The ids of positions [from, to), within the window; as a [1, to - from] i64 tensor on `device`.
  std::span<const int32_t> ids(int64_t from, int64_t to) const;
  Tensor tensor(int64_t from, int64_t to, const Device& device = Device::cpu()) const;

 private:
  TokenSource& source_;
  int64_t vocab_;
  std::vector<int32_t> ids_;  // positions [begin_, end())
  int64_t begin_ = 0;
  bool complete_ = false;
};

}  // namespace mgl::apps

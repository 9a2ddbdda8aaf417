#pragma once
// Turning generated token ids into printable text as they come, for streaming output.
//
// Decoding token by token is wrong in two ways: a multi-byte UTF-8 character may be split over
// several tokens (byte tokenizer, SentencePiece byte fallback), and SentencePiece decodes a piece
// differently at the start of a text (the leading space of "▁word" is dropped). So the stream
// decodes a short window of ids — a few ids of context before an anchor, and every id since — and
// releases only the part of the text after the context that can no longer change: text ending in an
// incomplete UTF-8 sequence or in U+FFFD (what an unfinished byte sequence decodes to) waits for the
// next token. The window moves forward once its text is all released, so the cost per token stays
// bounded however long the generation runs.
//
// Stop sequences: text that ends in a prefix of a stop sequence is held back until it either
// completes one (then the text before it is the last output, and the stream is stopped) or cannot.
#include <cstdint>
#include <string>
#include <vector>

#include "apps/lib/tokenizer.h"

namespace mgl::apps {

class TextStream {
 public:
  // `tokenizer` must outlive the stream. `context` ids (e.g. the prompt's last ones) precede the
  // generated ones, so that the first generated piece decodes as it does after them.
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_sequences,
             const std::vector<int32_t>& context = {});

  // Adds one generated id; returns the text that became final (possibly empty).
  std::string push(int32_t id);
  // The text still held back (an unfinished character, a possible stop prefix); call at the end.
  std::string finish();

  bool stopped() const { return stopped_; }  // a stop sequence appeared; push() returns nothing more

 private:
  void decode_window(std::string& body) const;
  // Adds `text` to the held text and returns what may be printed (everything when `final`).
  std::string release(std::string text, bool final);

  const Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  std::vector<int32_t> context_;  // ids before the anchor (their text is not ours to print)
  std::vector<int32_t> pending_;  // ids since the anchor
  size_t context_text_size_ = 0;  // bytes of decode(context_)
  size_t consumed_ = 0;           // bytes of the window's text (after the context) already taken
  std::string held_;              // taken but not yet printed (a possible stop prefix)
  bool stopped_ = false;
};

}  // namespace mgl::apps

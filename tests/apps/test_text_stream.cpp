// Streaming detokenization (apps/lib/text_stream.h): token-by-token output concatenates to the text
// decoded at once, never ends inside a UTF-8 character, survives the window moving over long texts
// (byte tokenizer and SentencePiece with its leading-space rule), and stop sequences end the output
// before them, also across token boundaries, without printing their prefixes too early.
#include <filesystem>
#include <fstream>

#include "apps/lib/text_stream.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

namespace {

// Whether `text` ends on a character boundary (no unfinished UTF-8 sequence at its end).
bool ends_on_character(const std::string& text) {
  size_t i = text.size(), continuation = 0;
  while (i > 0 && (static_cast<unsigned char>(text[i - 1]) & 0xC0) == 0x80) --i, ++continuation;
  if (i == 0) return continuation == 0;
  const auto lead = static_cast<unsigned char>(text[i - 1]);
  const size_t length = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
  return continuation + 1 == length;
}

// Streams `ids` through a TextStream; returns the concatenated output, checking every piece.
std::string stream_all(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                       const std::vector<std::string>& stops = {}, const std::vector<int32_t>& context = {}) {
  TextStream stream(tokenizer, stops, context);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    CHECK(ends_on_character(piece));
    out += piece;
  }
  return out + stream.finish();
}

}  // namespace

TEST_CASE("text stream: byte tokens print whole characters and concatenate to the text", "[apps][text_stream]") {
  const ByteTokenizer bytes;
  std::string text;
  for (int i = 0; i < 12; ++i) text += "héllo 🦈 wörld, 日本語 ";  // long enough to move the window
  CHECK(stream_all(bytes, bytes.encode(text)) == text);
  // A character split over tokens waits for its last byte.
  TextStream stream(bytes, {});
  CHECK(stream.push(0xF0).empty());
  CHECK(stream.push(0x9F).empty());
  CHECK(stream.push(0xA6).empty());
  CHECK(stream.push(0x88) == "🦈");
  // An unfinished character at the end comes out at finish (as the bytes it is).
  TextStream tail(bytes, {});
  CHECK(tail.push('a') == "a");
  CHECK(tail.push(0xC3).empty());
  CHECK(tail.finish() == "\xC3");
}

TEST_CASE("text stream: stop sequences end the output before them", "[apps][text_stream]") {
  const ByteTokenizer bytes;
  CHECK(stream_all(bytes, bytes.encode("abc STOP def"), {"STOP"}) == "abc ");
  CHECK(stream_all(bytes, bytes.encode("a STx b ST"), {"STOP"}) == "a STx b ST");  // prefixes that do not complete
  CHECK(stream_all(bytes, bytes.encode("one\n\ntwo"), {"\n\n", "tw"}) == "one");  // the earliest of several
  CHECK(stream_all(bytes, bytes.encode("no stop here"), {""}) == "no stop here");   // empty stops are ignored

  TextStream stream(bytes, {"END"});
  CHECK(stream.push('x') == "x");
  CHECK(stream.push('E').empty());  // could begin "END": held back
  CHECK(stream.push('N').empty());
  CHECK(stream.push('D').empty());
  CHECK(stream.stopped());
  CHECK(stream.push('y').empty());
  CHECK(stream.finish().empty());
  TextStream held(bytes, {"END"});
  CHECK(held.push('E').empty());
  CHECK(held.push('x') == "Ex");  // the prefix did not continue: released
}

TEST_CASE("text stream: SentencePiece pieces keep their spaces after the first", "[apps][text_stream][sentencepiece]") {
  if (!sentencepiece_available()) {
    WARN("SKIPPED: this build has no SentencePiece");
    return;
  }
  const auto dir = scratch("text_stream");
  const std::string corpus = (dir / "corpus.txt").string();
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 300; ++i)
      out << "the quick brown fox " << i << " jumps over the lazy dog, naïve café " << (i * 7) % 13 << "\n";
  }
  const auto tokenizer = load_sentencepiece(train_sentencepiece({corpus}, (dir / "tok").string(), 300));
  std::string text;
  for (int i = 0; i < 10; ++i) text += " the lazy fox jumps over 42 dogs; ünïcödé 🦈 café.";
  const std::vector<int32_t> ids = tokenizer->encode(text);
  REQUIRE(ids.size() > 64);  // the window moves
  CHECK(stream_all(*tokenizer, ids) == tokenizer->decode(ids));
  // After a context (the prompt), the first piece keeps its leading space.
  const std::vector<int32_t> prompt = tokenizer->encode("the quick");
  const std::vector<int32_t> more = tokenizer->encode(" brown fox");
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), more.begin(), more.end());
  CHECK(stream_all(*tokenizer, more, {}, prompt) == tokenizer->decode(all).substr(tokenizer->decode(prompt).size()));
  std::filesystem::remove_all(dir);
}

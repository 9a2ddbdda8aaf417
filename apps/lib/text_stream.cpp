// Incremental detokenization with stop sequences (see text_stream.h).
#include "apps/lib/text_stream.h"

#include <algorithm>

namespace mgl::apps {

namespace {

constexpr size_t kContextIds = 4;   // ids of context kept before the anchor
constexpr size_t kWindowIds = 32;   // move the anchor once this many released ids are pending

// Length of the prefix of `text` that cannot change when more tokens follow: without a trailing
// incomplete UTF-8 sequence and without trailing U+FFFD replacement characters.
size_t stable_length(const std::string& text) {
  size_t end = text.size();
  const std::string replacement = "\xEF\xBF\xBD";
  while (end >= 3 && text.compare(end - 3, 3, replacement) == 0) end -= 3;
  // Walk back over at most three continuation bytes to the lead byte of the last character.
  size_t lead = end, continuation = 0;
  while (lead > 0 && continuation < 4 && (static_cast<unsigned char>(text[lead - 1]) & 0xC0) == 0x80)
    --lead, ++continuation;
  if (lead == 0) return end;
  const auto byte = static_cast<unsigned char>(text[lead - 1]);
  const size_t length = byte < 0x80 ? 1 : (byte & 0xE0) == 0xC0 ? 2 : (byte & 0xF0) == 0xE0 ? 3 : (byte & 0xF8) == 0xF0 ? 4 : 1;
  return continuation + 1 < length ? lead - 1 : end;  // the last character is unfinished: not yet
}

}  // namespace

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop_sequences,
                       const std::vector<int32_t>& context)
    : tokenizer_(tokenizer), stops_(std::move(stop_sequences)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  context_.assign(context.end() - static_cast<ptrdiff_t>(std::min(context.size(), kContextIds)), context.end());
  context_text_size_ = tokenizer_.decode(context_).size();
}

void TextStream::decode_window(std::string& body) const {
  std::vector<int32_t> window = context_;
  window.insert(window.end(), pending_.begin(), pending_.end());
  const std::string text = tokenizer_.decode(window);
  body = text.substr(std::min(context_text_size_, text.size()));
}

std::string TextStream::push(int32_t id) {
  if (stopped_) return {};
  pending_.push_back(id);
  std::string body;
  decode_window(body);
  const size_t stable = std::max(stable_length(body), consumed_);
  std::string fresh = body.substr(std::min(consumed_, body.size()), stable - std::min(consumed_, stable));
  consumed_ = stable;
  if (consumed_ >= body.size() && pending_.size() >= kWindowIds) {  // all released: move the window
    std::vector<int32_t> all = context_;
    all.insert(all.end(), pending_.begin(), pending_.end());
    context_.assign(all.end() - kContextIds, all.end());
    pending_.clear();
    context_text_size_ = tokenizer_.decode(context_).size();
    consumed_ = 0;
  }
  return release(std::move(fresh), false);
}

std::string TextStream::release(std::string text, bool final) {
  held_ += text;
  // A complete stop sequence: print what precedes the earliest one, then nothing more.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail of the text that could still grow into a stop sequence.
  size_t hold = 0;
  for (const std::string& stop : stops_)
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > hold && !final; --n)
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        hold = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return {};
  std::string body;
  decode_window(body);
  std::string rest = body.substr(std::min(consumed_, body.size()));
  consumed_ = body.size();
  return release(std::move(rest), true);
}

}  // namespace mgl::apps

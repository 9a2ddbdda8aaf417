// Token streams read a block at a time (see token_source.h).
#include "apps/lib/token_source.h"

#include <sys/stat.h>

#include <algorithm>

#include "apps/lib/files.h"
#include "base/error.h"

namespace mgl::apps {

bool TokenVector::read(std::vector<int32_t>& ids) {
  if (next_ == ids_.size()) return false;
  const size_t end = std::min(ids_.size(), next_ + static_cast<size_t>(kBlockIds));
  ids.insert(ids.end(), ids_.begin() + static_cast<ptrdiff_t>(next_), ids_.begin() + static_cast<ptrdiff_t>(end));
  next_ = end;
  return true;
}

TextFileTokens::TextFileTokens(const std::string& path, const Tokenizer& tokenizer, int64_t block_bytes)
    : path_(path), tokenizer_(tokenizer), block_bytes_(block_bytes), file_(std::fopen(path.c_str(), "rb")) {
  MGL_CHECK(block_bytes >= 1, "text file tokens: block_bytes must be >= 1, got ", block_bytes);
  MGL_CHECK(file_, "cannot read text file '", path, "': ", os_reason());
  struct stat status {};
  MGL_CHECK(::fstat(::fileno(file_.get()), &status) == 0, "cannot read text file '", path, "': ", os_reason());
  // Its size is the bytes of bits per byte, and it is read again wherever it is scored (on every rank
  // under mpirun): a pipe would give neither. A directory fails below, as it reads (EISDIR).
  MGL_CHECK(S_ISREG(status.st_mode) || S_ISDIR(status.st_mode), "cannot read text file '", path,
            "': not a regular file");
  bytes_ = status.st_size;
  if (!tokenizer.cuts_anywhere()) newline_ = tokenizer.encode("\n");
  if (tokenizer.eos_id()) next_.push_back(*tokenizer.eos_id());
  if (std::optional<std::vector<int32_t>> block = encode_block())
    next_.insert(next_.end(), block->begin(), block->end());
  const bool whole = tokenizer.eos_id() || next_.empty();  // every byte predicted
  predicted_bytes_ = bytes_ - (whole ? 0 : static_cast<int64_t>(tokenizer.decode({next_[0]}).size()));
}

std::optional<std::vector<int32_t>> TextFileTokens::encode_block() {
  // Read until the text held can be cut (anywhere, or after a newline: see the header) or the file ends.
  size_t cut = 0;
  for (bool more = true; cut == 0 && more;) {
    const size_t held = text_.size();
    text_.resize(held + static_cast<size_t>(block_bytes_));
    const size_t n = std::fread(text_.data() + held, 1, static_cast<size_t>(block_bytes_), file_.get());
    MGL_CHECK(!std::ferror(file_.get()), "cannot read text file '", path_, "': ", os_reason());
    text_.resize(held + n);
    bytes_read_ += static_cast<int64_t>(n);
    more = n > 0;
    // The text held before holds no newline (it followed the last one): only the new bytes are searched.
    const size_t newline = std::string_view(text_).substr(held).rfind('\n');
    cut = !more || tokenizer_.cuts_anywhere() ? text_.size() : newline == std::string::npos ? 0 : held + newline + 1;
  }
  if (cut == 0) {
    MGL_CHECK(bytes_read_ == bytes_, "text file '", path_, "' changed while it was read: ", bytes_,
              " bytes when it was opened, ", bytes_read_, " read");
    return std::nullopt;
  }
  const std::string_view block(text_.data(), cut);
  std::vector<int32_t> ids;
  if (first_block_ || tokenizer_.cuts_anywhere()) {
    ids = tokenizer_.encode(block);
  } else {
    std::string after_newline = "\n";
    after_newline.append(block);
    ids = tokenizer_.encode(after_newline);
    MGL_CHECK(ids.size() >= newline_.size() && std::equal(newline_.begin(), newline_.end(), ids.begin()),
              "cannot tokenize text file '", path_, "' in blocks: the tokenizer joins a newline with what follows it");
    ids.erase(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(newline_.size()));
  }
  first_block_ = false;
  text_.erase(0, cut);
  return ids;
}

bool TextFileTokens::read(std::vector<int32_t>& ids) {
  while (next_.empty()) {  // a block of text may encode to no ids
    std::optional<std::vector<int32_t>> block = encode_block();
    if (!block) return false;
    next_ = std::move(*block);
  }
  ids.insert(ids.end(), next_.begin(), next_.end());
  next_.clear();
  return true;
}

void TokenWindow::read_to(int64_t end, int64_t keep) {
  while (!complete_ && this->end() < end) {
    // The ids no longer needed go before the window grows (not at every call, which would move the
    // rest each time).
    const auto dropped = static_cast<size_t>(std::clamp<int64_t>(keep - begin_, 0, static_cast<int64_t>(ids_.size())));
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<ptrdiff_t>(dropped));
    begin_ += static_cast<int64_t>(dropped);
    const size_t first_new = ids_.size();
    complete_ = !source_.read(ids_);
    for (size_t i = first_new; i < ids_.size(); ++i)
      MGL_CHECK(ids_[i] >= 0 && ids_[i] < vocab_, "token ", ids_[i], " at position ", begin_ + static_cast<int64_t>(i),
                " is outside the model's vocabulary [0, ", vocab_, ")");
  }
}

std::span<const int32_t> TokenWindow::ids(int64_t from, int64_t to) const {
  MGL_CHECK(begin_ <= from && from <= to && to <= end(), "token window: positions [", from, ", ", to,
            ") are not within the ids held, [", begin_, ", ", end(), ")");
  return std::span<const int32_t>(ids_).subspan(static_cast<size_t>(from - begin_), static_cast<size_t>(to - from));
}

Tensor TokenWindow::tensor(int64_t from, int64_t to, const Device& device) const {
  const std::span<const int32_t> span = ids(from, to);
  return Tensor::from_vector(std::vector<int32_t>(span.begin(), span.end()), {1, to - from}, DType::i64, device);
}

}  // namespace mgl::apps

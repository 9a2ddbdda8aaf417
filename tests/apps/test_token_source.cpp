// Token streams (apps/lib/token_source.h): a text file tokenized a block at a time gives the ids of
// the whole text, with blocks of any size, for the byte tokenizer and for SentencePiece (lines longer
// than a block, blank lines, leading spaces, no final newline); a file that cannot be read, or that
// changes while it is read, is named; a vector is handed out in blocks; a window reads as far as asked,
// drops what is no longer needed, and names an id outside the vocabulary with its position.
#include <filesystem>
#include <fstream>

#include "apps/generated_text.h"
#include "apps/lib/token_source.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

// A file of `text` in a scratch directory, removed with it.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& text)
      : dir_(process_scratch() / ("token_source_" + std::to_string(fresh_seed()))) {
    fs::create_directories(dir_);
    std::ofstream(path(), std::ios::binary) << text;
  }
  ~ScratchFile() { fs::remove_all(dir_); }
  std::string path() const { return (dir_ / "text.txt").string(); }
  std::string dir() const { return dir_.string(); }

 private:
  fs::path dir_;
};

std::vector<int32_t> all_ids(TokenSource& source) {
  std::vector<int32_t> ids;
  while (source.read(ids)) {
  }
  return ids;
}

// Lines of every kind a cut must survive: a newline first, blank lines, leading and doubled spaces, a
// tab, CR LF, multi-byte characters, digits, a line longer than most blocks, no newline at the end.
std::string awkward_text() {
  std::string text = "\n  the model reads  tokens\n\n\tcafé naïve über 2024\r\n" + generated_text(2, 30);
  for (int i = 0; i < 40; ++i) text += "a long line of the gated attention model, ";
  return text + "\nthe last words";
}

}  // namespace

TEST_CASE("text file tokens: the byte tokenizer's ids of the whole text, for any block size", "[apps][token_source]") {
  const std::string text = awkward_text();
  const ScratchFile file(text);
  const ByteTokenizer bytes;
  for (int64_t block : {int64_t{1}, int64_t{3}, int64_t{64}, TextFileTokens::kBlockBytes}) {
    INFO("blocks of " << block << " bytes");
    TextFileTokens tokens(file.path(), bytes, block);
    CHECK(tokens.bytes() == static_cast<int64_t>(text.size()));
    CHECK(tokens.predicted_bytes() == static_cast<int64_t>(text.size()) - 1);  // no separator: the first byte is context
    CHECK(all_ids(tokens) == bytes.encode(text));
    CHECK(tokens.bytes_read() == tokens.bytes());
    std::vector<int32_t> more;
    CHECK_FALSE(tokens.read(more));
  }
}

TEST_CASE("text file tokens: SentencePiece's ids of the whole text, cut after newlines",
          "[apps][token_source][sentencepiece]") {
  if (!sentencepiece_available()) {
    WARN("SKIPPED: this build has no SentencePiece");
    return;
  }
  // A fixed corpus and text (seeds 1 and 2): the whole text's ids are a tie-free reference (see
  // apps/lib/token_source.h), and the pieces span many bytes: there is something to cut wrongly.
  const ScratchFile training(generated_text(1, 400));
  const auto tokenizer = load_sentencepiece(train_sentencepiece({training.path()}, training.dir() + "/tok", 400));
  REQUIRE(tokenizer->eos_id().has_value());
  const std::string text = awkward_text();
  REQUIRE(tokenizer->encode(text).size() < text.size() / 2);
  const ScratchFile file(text);
  std::vector<int32_t> want = {*tokenizer->eos_id()};  // a document: the separator, then the text
  for (int32_t id : tokenizer->encode(text)) want.push_back(id);
  for (int64_t block : {int64_t{1}, int64_t{7}, int64_t{100}, TextFileTokens::kBlockBytes}) {
    INFO("blocks of " << block << " bytes");
    TextFileTokens tokens(file.path(), *tokenizer, block);
    CHECK(tokens.predicted_bytes() == static_cast<int64_t>(text.size()));  // after a separator, every byte
    CHECK(all_ids(tokens) == want);
  }
}

TEST_CASE("text file tokens: files that cannot be read, or change while read, are named", "[apps][token_source]") {
  const ScratchFile file(std::string(200000, 'x'));
  const ByteTokenizer bytes;
  CHECK(contains(error_message([&] { TextFileTokens(file.dir(), bytes); }),
                 "cannot read text file '" + file.dir() + "': Is a directory"));
  CHECK(contains(error_message([&] { TextFileTokens(file.dir() + "/absent.txt", bytes); }),
                 "No such file or directory"));
  CHECK(contains(error_message([&] { TextFileTokens("/dev/null", bytes); }), "not a regular file"));
  TextFileTokens tokens(file.path(), bytes, 1000);  // beyond what the C library buffers at the first read
  fs::resize_file(file.path(), 100000);
  CHECK(contains(error_message([&] { all_ids(tokens); }),
                 "changed while it was read: 200000 bytes when it was opened, 100000 read"));
}

TEST_CASE("token vector: the ids in blocks, and their number", "[apps][token_source]") {
  const std::vector<int32_t> ids(TokenVector::kBlockIds + 5, 7);
  TokenVector source(ids);
  CHECK(source.size() == static_cast<int64_t>(ids.size()));
  std::vector<int32_t> got;
  CHECK(source.read(got));
  CHECK(got.size() == static_cast<size_t>(TokenVector::kBlockIds));
  CHECK(source.read(got));
  CHECK(got == ids);
  CHECK_FALSE(source.read(got));
}

TEST_CASE("token window: reads as far as asked, drops what is no longer needed, checks the vocabulary",
          "[apps][token_source]") {
  std::vector<int32_t> ids(3 * TokenVector::kBlockIds);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i % 50);
  TokenVector source(ids);
  TokenWindow window(source, 50);
  window.read_to(10, 0);
  CHECK(window.end() == TokenVector::kBlockIds);  // a block at a time
  CHECK_FALSE(window.complete());
  CHECK(window.ids(3, 6)[0] == 3);
  // Asking beyond what is held reads on, dropping the ids before `keep` first.
  window.read_to(TokenVector::kBlockIds + 1, 100);
  CHECK(window.begin() == 100);
  CHECK(window.end() == 2 * TokenVector::kBlockIds);
  CHECK(contains(error_message([&] { window.ids(99, 101); }), "not within the ids held"));
  const Tensor t = window.tensor(100, 104);
  CHECK(t.shape() == Shape{1, 4});
  CHECK(t.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  window.read_to(10 * TokenVector::kBlockIds, 3 * TokenVector::kBlockIds);  // to the end, keeping none
  CHECK(window.complete());
  CHECK(window.end() == static_cast<int64_t>(ids.size()));

  ids[70000] = 50;
  TokenVector bad(ids);
  TokenWindow checked(bad, 50);
  checked.read_to(10, 0);  // the first block is fine
  CHECK(contains(error_message([&] { checked.read_to(TokenVector::kBlockIds + 10, 0); }),
                 "token 50 at position 70000 is outside the model's vocabulary [0, 50)"));
}

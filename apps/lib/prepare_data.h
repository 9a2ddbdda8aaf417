#pragma once
// Turning text into training data: the library behind `build/bin/prepare` and the train app's
// prepare-on-first-use of a corpus.
//
// prepare_data() reads the text files in order, tokenizes each (followed by the tokenizer's
// end-of-sequence id when it has one, as a document separator) and writes into the output directory:
//   train.bin       the token stream but its held-out tail (token shard, apps/lib/token_shards.h)
//   val.bin         the held-out tail: the last val_fraction of the stream, and at least one window of
//                   seq_len + 1 tokens so that validation always has a full sequence
//   tokenizer.model (sentencepiece only) the model: trained on the inputs with vocab_size pieces, or a
//                   copy of tokenizer_model
//   meta.json       the tokenizer identity, vocabulary size, special ids, token dtype, counts and the
//                   byte count of each split (for bits per byte); written last, so its presence means
//                   the directory is complete
//
// Inputs ending in .gz (or .dz, dictzip, which is gzip-compatible) are decompressed on the fly.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/lib/tokenizer.h"
#include "base/value_range.h"

namespace mgl::apps {

// The held-out fraction: both splits must hold tokens (prepare --val-fraction, data.val_fraction).
constexpr ValueRange kValFractionRange = ValueRange::open(0, 1);

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out;
  std::string tokenizer = "bytes";      // bytes | sentencepiece
  std::optional<int> vocab_size;        // SentencePiece: train a model of this many pieces (default 32000)
  std::string tokenizer_model;          // SentencePiece: use this model instead of training one
  double val_fraction = 0.01;
  int64_t seq_len = 1024;
};

// What a prepared directory holds (its meta.json).
struct PreparedData {
  std::string directory;
  std::string tokenizer_identity;
  std::string tokenizer_kind;           // bytes | sentencepiece
  int64_t vocab_size = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t val_bytes = 0;                // bytes of text the validation tokens decode to
  std::string train_path() const;
  std::string val_path() const;
  std::string tokenizer_model_path() const;  // "" for the byte tokenizer
  // The tokenizer the data was made with (checks the identity against meta.json).
  std::unique_ptr<Tokenizer> tokenizer() const;
};

// Prepares `options.out` (see above) and returns its description. Throws mgl::Error naming the problem.
PreparedData prepare_data(const PrepareOptions& options);

// Reads DIR/meta.json; throws mgl::Error when the directory is not a complete prepared directory.
PreparedData read_prepared_data(const std::string& directory);

// The default training corpus: the GNU Collaborative International Dictionary of English (GCIDE, GPL;
// 40 MB of English text) from Debian's dict-gcide package: $MGL_DEFAULT_CORPUS when set (e.g. where a
// package was unpacked outside /usr), else /usr/share/dictd/gcide.dict.dz.
std::string default_corpus_path();

// The whole content of a text file, decompressing .gz/.dz files; check_text_input refuses any other file.
std::string read_text_file(const std::string& path);

// Throws mgl::Error when `head` (the first bytes of the file at `path`, decompressed) is not text — a NUL
// byte in its first 64 KiB — saying what the file looks like: token ids of another trainer (nanoGPT's
// headerless uint16 train.bin/val.bin, llm.c's shards with their 1024-byte header), a megalodon.cpp token
// shard, an HDF5 file, a zip archive or Python pickle, UTF-16 text. Data is text that megalodon.cpp
// tokenizes itself (docs/training.md), so such a file is never read as text.
void check_text_input(const std::string& path, const std::string& head);

}  // namespace mgl::apps

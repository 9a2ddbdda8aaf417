#include "apps/lib/prepare_data.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <string_view>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/lib/files.h"
#include "apps/lib/run_lock.h"
#include "apps/lib/token_shards.h"
#include "base/error.h"

namespace mgl::apps {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

bool is_gzip_name(const std::string& path) {
  const std::string extension = fs::path(path).extension().string();
  return extension == ".gz" || extension == ".dz";
}

std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  MGL_CHECK(file, "cannot open compressed input file '", path, "'");
  std::string text;
  char buffer[1 << 16];
  int got = 0;
  while ((got = gzread(file, buffer, sizeof(buffer))) > 0) {
    // zlib passes data that is not gzip through unchanged ("transparent" mode): a .gz of other bytes
    // would be read as text. A compressed name must hold compressed data.
    if (text.empty() && gzdirect(file)) {
      gzclose(file);
      MGL_FAIL("'", path, "' is named as gzip-compressed (.gz/.dz) but does not hold gzip data (no gzip header)");
    }
    text.append(buffer, static_cast<size_t>(got));
  }
  int error = Z_OK;
  const char* message = gzerror(file, &error);
  const std::string reason = message ? message : "";
  gzclose(file);
  MGL_CHECK(got == 0 && (error == Z_OK || error == Z_STREAM_END), "cannot decompress '", path, "': ", reason);
  return text;
}

// The bytes of text checked by check_text_input.
constexpr size_t kTextCheckBytes = 65536;

// llm.c's token shards (dev/data/data_common.py): 256 int32 — magic, version (1: uint16 GPT-2 ids, 2: uint32
// Llama 3 ids), token count, zeros — then the tokens.
constexpr int32_t kLlmcMagic = 20240520;
constexpr size_t kLlmcHeaderBytes = 1024;

// What a file that is not text looks like, from its first bytes and its size.
std::string describe_binary(const std::string& path, const std::string& head, size_t nul_at) {
  const uintmax_t size = fs::file_size(path);
  auto starts_with = [&](std::string_view prefix) { return head.compare(0, prefix.size(), prefix) == 0; };
  if (starts_with(std::string_view(kTokenShardMagic, sizeof kTokenShardMagic)))
    return "a megalodon.cpp token shard: pass the prepared directory that holds it and its meta.json";
  int32_t llmc[3] = {};
  if (head.size() >= sizeof llmc) std::memcpy(llmc, head.data(), sizeof llmc);
  if (llmc[0] == kLlmcMagic && (llmc[1] == 1 || llmc[1] == 2)) {
    const int64_t token_bytes = llmc[1] == 1 ? 2 : 4;
    return "an llm.c token shard (version " + std::to_string(llmc[1]) + ": " + std::to_string(llmc[2]) + " " +
           (token_bytes == 2 ? "uint16 GPT-2" : "uint32 Llama 3") + " token ids after a 1024-byte header" +
           (size == kLlmcHeaderBytes + static_cast<uintmax_t>(llmc[2]) * token_bytes ? "" : ", though the size does not match") + ")";
  }
  if (starts_with("\x89HDF\r\n\x1a\n")) return "an HDF5 file (a checkpoint or weights: see train --init-from)";
  if (starts_with("PK\x03\x04")) return "a zip archive (a PyTorch .pth file?)";
  if (starts_with("\x80")) return "a Python pickle (nanoGPT's meta.pkl?)";
  if (starts_with("\xff\xfe") || starts_with("\xfe\xff")) return "UTF-16 text: convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)";
  if (fs::path(path).extension() == ".bin" && size % 2 == 0)
    return "token ids without a header, as nanoGPT's prepare.py writes train.bin and val.bin (as uint16: " +
           std::to_string(size / 2) + " tokens of an unknown tokenizer)";
  return "binary data (a NUL byte at offset " + std::to_string(nul_at) + ")";
}

// The tokenizer the options ask for; a SentencePiece model ends up in OUT/tokenizer.model.
std::unique_ptr<Tokenizer> tokenizer_for(const PrepareOptions& o) {
  if (o.tokenizer == "bytes") {
    MGL_CHECK(!o.vocab_size || *o.vocab_size == 256, "the bytes tokenizer has vocab size 256, not ", *o.vocab_size);
    MGL_CHECK(o.tokenizer_model.empty(), "a tokenizer model needs the sentencepiece tokenizer");
    return std::make_unique<ByteTokenizer>();
  }
  MGL_CHECK(o.tokenizer == "sentencepiece", "unknown tokenizer '", o.tokenizer, "' (known: bytes, sentencepiece)");
  const fs::path model = fs::path(o.out) / "tokenizer.model";
  if (!o.tokenizer_model.empty()) {
    MGL_CHECK(!o.vocab_size, "a vocabulary size trains a new model; it cannot be combined with a tokenizer model");
    std::unique_ptr<Tokenizer> loaded = load_sentencepiece(o.tokenizer_model);  // fails early if unusable
    if (!fs::exists(model) || !fs::equivalent(o.tokenizer_model, model)) {
      fs::copy_file(o.tokenizer_model, model, fs::copy_options::overwrite_existing);
    }
    return loaded;
  }
  const int vocab_size = o.vocab_size.value_or(32000);
  // The trainer reads files line by line: give it plain text even when the inputs are compressed.
  std::vector<std::string> plain;
  for (const std::string& input : o.inputs) {
    if (!is_gzip_name(input)) {
      plain.push_back(input);
      continue;
    }
    const fs::path copy = fs::path(o.out) / (fs::path(input).stem().string() + ".spm-input.txt");
    write_file_atomically(copy.string(), read_text_file(input));  // a full disk is an error, not a shorter corpus
    plain.push_back(copy.string());
  }
  const std::string trained = train_sentencepiece(plain, (fs::path(o.out) / "tokenizer").string(), vocab_size);
  for (size_t i = 0; i < plain.size(); ++i)
    if (plain[i] != o.inputs[i]) fs::remove(plain[i]);
  std::printf("prepare: trained a SentencePiece model (at most %d pieces) on %zu file(s) -> %s\n", vocab_size,
              o.inputs.size(), trained.c_str());
  return load_sentencepiece(trained);
}

int64_t decoded_bytes(const Tokenizer& tokenizer, const std::vector<uint32_t>& tokens) {
  if (tokenizer.identity() == "bytes") return static_cast<int64_t>(tokens.size());
  const std::vector<int32_t> ids(tokens.begin(), tokens.end());
  return static_cast<int64_t>(tokenizer.decode(ids).size());
}

}  // namespace

std::string default_corpus_path() {
  const char* configured = std::getenv("MGL_DEFAULT_CORPUS");
  return configured && *configured ? configured : "/usr/share/dictd/gcide.dict.dz";
}

std::string read_text_file(const std::string& path) {
  MGL_CHECK(fs::is_regular_file(path), "input file '", path, "' not found");
  std::string text = is_gzip_name(path) ? read_gzip(path) : read_file(path, "input file");
  check_text_input(path, text.substr(0, kTextCheckBytes));
  return text;
}

void check_text_input(const std::string& path, const std::string& head) {
  const size_t nul = head.find('\0', 0);
  if (nul == std::string::npos || nul >= kTextCheckBytes) return;
  MGL_FAIL("input file '", path, "' is not text: it looks like ", describe_binary(path, head, nul),
           ". Data is text that megalodon.cpp tokenizes itself (pass the text the tokens came from), or a directory "
           "made by build/bin/prepare");
}

std::string PreparedData::train_path() const { return (fs::path(directory) / "train.bin").string(); }
std::string PreparedData::val_path() const { return (fs::path(directory) / "val.bin").string(); }
std::string PreparedData::tokenizer_model_path() const {
  return tokenizer_kind == "sentencepiece" ? (fs::path(directory) / "tokenizer.model").string() : "";
}

std::unique_ptr<Tokenizer> PreparedData::tokenizer() const {
  std::unique_ptr<Tokenizer> t = make_tokenizer(tokenizer_kind, tokenizer_model_path());
  MGL_CHECK(t->identity() == tokenizer_identity, "the tokenizer in '", directory, "' is ", t->identity(),
            " but meta.json says ", tokenizer_identity);
  return t;
}

PreparedData prepare_data(const PrepareOptions& o) {
  MGL_CHECK(!o.inputs.empty(), "no input files to prepare");
  check_in_range(kValFractionRange, "the validation fraction", o.val_fraction);
  MGL_CHECK(o.seq_len >= 1, "the sequence length must be >= 1, got ", o.seq_len);
  for (const std::string& input : o.inputs) {  // before anything reads them (a SentencePiece training, say)
    MGL_CHECK(fs::is_regular_file(input), "input file '", input, "' not found");
    if (is_gzip_name(input)) continue;  // checked once decompressed, by read_text_file
    std::string head(kTextCheckBytes, '\0');
    std::ifstream in(input, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
    check_text_input(input, head);
  }
  const RunLock lock(o.out, "data");  // one writer per data folder (apps/lib/run_lock.h)
  const std::unique_ptr<Tokenizer> tokenizer = tokenizer_for(o);

  std::vector<uint32_t> stream;
  for (const std::string& input : o.inputs) {
    for (int32_t id : tokenizer->encode(read_text_file(input))) stream.push_back(static_cast<uint32_t>(id));
    if (tokenizer->eos_id()) stream.push_back(static_cast<uint32_t>(*tokenizer->eos_id()));
  }
  const auto total = static_cast<int64_t>(stream.size());
  const int64_t window = o.seq_len + 1;
  const int64_t val_count = std::max(window, static_cast<int64_t>(std::ceil(o.val_fraction * total)));
  MGL_CHECK(total - val_count >= window, "the inputs give ", total, " tokens: too few for a validation split of ",
            val_count, " tokens and at least one training window of ", window, " tokens (sequence length ", o.seq_len,
            ")");

  const TokenDType dtype = token_dtype_for_vocab(tokenizer->vocab_size());
  const std::vector<uint32_t> train(stream.begin(), stream.end() - val_count);
  const std::vector<uint32_t> val(stream.end() - val_count, stream.end());
  write_token_shard((fs::path(o.out) / "train.bin").string(), train, dtype);
  write_token_shard((fs::path(o.out) / "val.bin").string(), val, dtype);

  auto special = [](std::optional<int32_t> id) { return id ? json(*id) : json(nullptr); };
  json meta = {
      {"format", "MGLTOKS1"},
      {"tokenizer", tokenizer->identity()},
      {"tokenizer_kind", o.tokenizer},
      {"vocab_size", tokenizer->vocab_size()},
      {"bos_id", special(tokenizer->bos_id())},
      {"eos_id", special(tokenizer->eos_id())},
      {"token_dtype", dtype == TokenDType::u16 ? "uint16" : "uint32"},
      {"train_tokens", train.size()},
      {"val_tokens", val.size()},
      {"val_bytes", decoded_bytes(*tokenizer, val)},
      {"seq_len", o.seq_len},
      {"val_fraction", o.val_fraction},
      {"inputs", o.inputs},
  };
  if (o.tokenizer == "sentencepiece") meta["tokenizer_model"] = "tokenizer.model";
  write_file_atomically((fs::path(o.out) / "meta.json").string(), meta.dump(2) + "\n");
  std::printf("prepare: %s, vocab %lld: %zu train + %zu val tokens -> %s\n", tokenizer->identity().c_str(),
              static_cast<long long>(tokenizer->vocab_size()), train.size(), val.size(), o.out.c_str());
  return read_prepared_data(o.out);
}

PreparedData read_prepared_data(const std::string& directory) {
  const fs::path meta_path = fs::path(directory) / "meta.json";
  MGL_CHECK(fs::is_directory(directory), "data directory '", directory, "' not found");
  MGL_CHECK(fs::is_regular_file(meta_path), "'", directory,
            "' is not a prepared data directory (no meta.json; make one with build/bin/prepare)");
  json meta;
  try {
    std::ifstream in(meta_path);
    meta = json::parse(in);
  } catch (const json::exception& e) {
    MGL_FAIL("'", meta_path.string(), "' is not a valid data description: ", e.what());
  }
  MGL_CHECK(meta.is_object(), "'", meta_path.string(), "' is not a valid data description: not a JSON object");
  // A missing key or one of the wrong type is named (issue 15 item 4), not a JSON library's type error.
  auto field = [&](const char* key, bool integer) -> const json& {
    MGL_CHECK(meta.contains(key) && (integer ? meta[key].is_number_integer() : meta[key].is_string()), "'",
              meta_path.string(), "': key '", key, "' must be ", integer ? "an integer" : "a string",
              meta.contains(key) ? ", got " + meta[key].dump() : std::string(", and is missing"));
    return meta[key];
  };
  PreparedData d;
  d.directory = directory;
  d.tokenizer_identity = field("tokenizer", false).get<std::string>();
  d.tokenizer_kind = field("tokenizer_kind", false).get<std::string>();
  d.vocab_size = field("vocab_size", true).get<int64_t>();
  d.train_tokens = field("train_tokens", true).get<int64_t>();
  d.val_tokens = field("val_tokens", true).get<int64_t>();
  d.val_bytes = meta.contains("val_bytes") ? field("val_bytes", true).get<int64_t>()
                                           : (d.tokenizer_kind == "bytes" ? d.val_tokens : int64_t{0});
  MGL_CHECK(d.tokenizer_kind == "bytes" || d.tokenizer_kind == "sentencepiece", "'", meta_path.string(),
            "': key 'tokenizer_kind' is '", d.tokenizer_kind, "'; known: bytes, sentencepiece");
  MGL_CHECK(d.tokenizer_kind == "bytes" || fs::is_regular_file(d.tokenizer_model_path()), "'", meta_path.string(),
            "' names a sentencepiece tokenizer, but '", d.tokenizer_model_path(), "' is missing");
  // The description must agree with the shards it describes (their checksums are checked when read).
  const std::string token_dtype = field("token_dtype", false).get<std::string>();
  MGL_CHECK(token_dtype == "uint16" || token_dtype == "uint32", "'", meta_path.string(), "': key 'token_dtype' is '",
            token_dtype, "'; known: uint16, uint32");
  for (const auto& [split, promised] : {std::pair{d.train_path(), d.train_tokens}, std::pair{d.val_path(), d.val_tokens}}) {
    MGL_CHECK(fs::is_regular_file(split), "prepared data directory '", directory, "' lacks ", split);
    const TokenShardInfo shard = read_token_shard_info(split);
    MGL_CHECK(shard.count == static_cast<uint64_t>(promised), "'", meta_path.string(), "' says ", promised,
              " tokens for ", split, ", which holds ", shard.count);
    MGL_CHECK((shard.dtype == TokenDType::u16) == (token_dtype == "uint16"), "'", meta_path.string(),
              "': key 'token_dtype' is ", token_dtype, " but ", split, " holds ",
              shard.dtype == TokenDType::u16 ? "uint16" : "uint32", " tokens");
  }
  return d;
}

}  // namespace mgl::apps

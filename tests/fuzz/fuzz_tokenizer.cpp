// Fuzz target: the tokenizer loader (apps/lib/tokenizer.h). The input is a SentencePiece .model file, loaded
// as `prepare --tokenizer-model` and a data directory load one (load_sentencepiece); one that loads must load
// again from its bytes as a checkpoint's tokenizer does (tokenizer_from_identity), and text must encode to ids
// inside its vocabulary that decode again. Seeds: the model tests/fuzz/make_seeds.sh trains.
#include <cstddef>
#include <cstdint>

#include "apps/lib/tokenizer.h"
#include "base/error.h"
#include "fuzz/harness.h"

namespace {

// Text with ASCII, multi-byte UTF-8, a control character and invalid UTF-8 (a lone continuation byte).
constexpr std::string_view kSample = "Whale \\Whale\\, n. [AS. hwal.]\n\tCetacea, \xc3\xa9t\xc3\xa9 \xe2\x80\x94 \x80 end";

void use(const mgl::apps::Tokenizer& tokenizer) {
  const std::vector<int32_t> ids = tokenizer.encode(kSample);
  for (const int32_t id : ids)
    mgl::fuzz::require(id >= 0 && id < tokenizer.vocab_size(), "encode gave the id " + std::to_string(id) +
                                                                   ", outside the vocabulary");
  tokenizer.decode(ids);
  for (const std::optional<int32_t> special : {tokenizer.bos_id(), tokenizer.eos_id()})
    if (special) tokenizer.decode({*special});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mgl::fuzz::write_scratch_file("tokenizer.model", {reinterpret_cast<const char*>(data), size});
  std::unique_ptr<mgl::apps::Tokenizer> loaded;
  mgl::fuzz::expect_success_or_error([&] { loaded = mgl::apps::load_sentencepiece(path); });
  if (!loaded) return 0;
  // A model that loaded once loads again, as the same tokenizer, from the bytes a checkpoint keeps of it.
  try {
    mgl::apps::tokenizer_from_identity(loaded->identity(), loaded->model_bytes());
  } catch (const mgl::Error& e) {
    mgl::fuzz::require(false, std::string("the loaded model does not rebuild from its bytes: ") + e.what());
  }
  mgl::fuzz::expect_success_or_error([&] { use(*loaded); });
  return 0;
}

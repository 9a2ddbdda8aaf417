// prepare: turns text files into token shards for training.
//
//   prepare --input FILE... --out DIR [--tokenizer bytes|sentencepiece] [--vocab-size N]
//           [--tokenizer-model FILE] [--val-fraction 0.01] [--seq-len 1024]
//
// What it writes into DIR (train.bin, val.bin, tokenizer.model, meta.json) is described in
// apps/lib/prepare_data.h. Inputs may be plain or gzip/dictzip-compressed text.
// Errors go to stderr with a non-zero exit status.
#include <cstdio>

#include "apps/lib/command_line.h"
#include "apps/lib/prepare_data.h"

using namespace mgl::apps;

int main(int argc, char** argv) {
  CLI::App app{"prepare: tokenize text files into train/val token shards"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  PrepareOptions o;
  int vocab_size = 0;
  app.add_option("--input", o.inputs, "text files (plain, .gz or .dz), read in order")->required()->expected(1, -1);
  app.add_option("--out", o.out, "output directory (created if missing)")->required();
  app.add_option("--tokenizer", o.tokenizer, "bytes or sentencepiece")
      ->check(CLI::IsMember({"bytes", "sentencepiece"}));
  CLI::Option* vocab_option =
      app.add_option("--vocab-size", vocab_size, "pieces of the SentencePiece model to train (default 32000)")
          ->check(integer_in(1, INT32_MAX));
  app.add_option("--tokenizer-model", o.tokenizer_model, "an existing SentencePiece .model to use instead of training");
  app.add_option("--val-fraction", o.val_fraction, "held-out fraction of the token stream (the tail)")
      ->check(real_in(kValFractionRange));
  app.add_option("--seq-len", o.seq_len, "training sequence length: the validation split holds at least one window")
      ->check(integer_in(1, mgl::kMaxCount));
  if (auto status = parse_command_line(app, argc, argv, "prepare")) return *status;
  if (vocab_option->count() > 0) o.vocab_size = vocab_size;
  try {
    prepare_data(o);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prepare: %s\n", e.what());
    return 1;
  }
}

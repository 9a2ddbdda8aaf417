// nn/flops.h: the model FLOPs per token against numbers counted by hand for the "test" preset, the
// mean causal keys per query for chunks that divide the sequence, exceed it or leave a shorter last one,
// the dense term of mega200M's block against docs/perf.md's 77 MFLOP per token, and the whole model at 4096 tokens.
#include <cmath>

#include "nn/flops.h"
#include "support/errors.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

TEST_CASE("mean keys per query under chunked causal attention") {
  CHECK(mean_keys_per_query(16, 8) == 4.5);         // (c + 1) / 2
  CHECK(mean_keys_per_query(4, 8) == 2.5);          // shorter than a chunk: (L + 1) / 2
  CHECK(mean_keys_per_query(12, 8) == 46.0 / 12.0);  // 36 pairs in the chunk of 8, 10 in the last 4
  CHECK(mean_keys_per_query(1, 1) == 1.0);
  CHECK(contains(error_message([] { mean_keys_per_query(0, 8); }), "seq_len (0) and chunk (8) must be >= 1"));
}

TEST_CASE("FLOPs per token of the test preset, counted by hand") {
  // test: 2 layers, D 16, Z 8, V 12, F 24 (SwiGLU), vocab 50, N 4, chunk 8.
  const MegalodonConfig c = MegalodonConfig::preset("test");
  // Matrix weights a token meets: per block wz 8*16 + wv, wr 2*12*16 + wh1 16*16 + wh2 16*12 + fc1..3 3*24*16
  // = 128 + 384 + 256 + 192 + 1152 = 2112; two blocks 4224; the head 50*16 = 800; in all 5024.
  const ModelFlops at16 = megalodon_flops_per_token(c, 16);
  CHECK(at16.dense == 6.0 * 5024);
  // c_eff = 4.5: per block 3 * 2 * 4.5 * (8 + 12) = 540.
  CHECK(at16.attention == 2 * 540.0);
  // Per block 3 * 16 * (12 * 4 + 2) = 2400.
  CHECK(at16.cema == 2 * 2400.0);
  CHECK(at16.total() == 30144.0 + 1080.0 + 4800.0);
  // A sequence shorter than a chunk: c_eff = 2.5, 3 * 2 * 2.5 * 20 = 300 a block; nothing else changes.
  const ModelFlops at4 = megalodon_flops_per_token(c, 4);
  CHECK(at4.attention == 2 * 300.0);
  CHECK(at4.dense == at16.dense);
  CHECK(at4.cema == at16.cema);
}

TEST_CASE("FLOPs per token: a tied head still counts, plain FFN has two matrices") {
  MegalodonConfig c = MegalodonConfig::preset("test");
  const double untied = megalodon_flops_per_token(c, 16).dense;
  c.share_embedding = true;
  CHECK(megalodon_flops_per_token(c, 16).dense == untied);
  c.swiglu = false;  // one F x D matrix less per block
  CHECK(megalodon_flops_per_token(c, 16).dense == untied - 6.0 * 2 * 24 * 16);
}

TEST_CASE("mega200M's block: 12.85 M matrix weights, 77 MFLOP per token (docs/perf.md)") {
  MegalodonConfig c = MegalodonConfig::preset("mega200M");
  c.num_layers = 1;
  c.vocab_size = 0;  // the block alone
  const ModelFlops f = megalodon_flops_per_token(c, 32768);
  CHECK(f.dense == 6.0 * 12845056);
  // Chunk attention at c = 2048: c_eff = 1024.5, 3 * 2 * 1024.5 * (256 + 2048).
  CHECK(f.attention == 3 * 2 * 1024.5 * 2304);
}

TEST_CASE("mega200M at 4096 tokens: 1.30 GFLOP per token (docs/perf.md)") {
  const ModelFlops f = megalodon_flops_per_token(MegalodonConfig::preset("mega200M"), 4096);
  CHECK(f.dense == 6.0 * (12 * 12845056.0 + 32000 * 1024.0));
  CHECK(f.attention == 12 * 3 * 2 * 1024.5 * 2304);
  CHECK(f.cema == 12 * 3 * 1024 * (12 * 16 + 2.0));
  CHECK(std::abs(f.total() / 1.298556e9 - 1) < 1e-6);
}

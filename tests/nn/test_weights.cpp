// nn/weights: a model's weights read from a training checkpoint, a run directory, an HDF5 weights file, a
// safetensors file and an export directory all equal the model's parameters bit for bit; the conversions
// between them round trip (the bytes of a safetensors file written again are the same); loading is strict;
// a file of another kind is refused with what it looks like.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "nn/adamw.h"
#include "nn/checkpoint.h"
#include "nn/init.h"
#include "nn/weights.h"
#include "support/errors.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<Megalodon> model_from_seed(uint64_t seed, const MegalodonConfig& config = MegalodonConfig::preset("test")) {
  Generator gen(seed);
  InitOptions init;
  init.generator = &gen;
  return std::make_shared<Megalodon>(config, init);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.numel() * a.element_size()) == 0;
}

// Every parameter of `model` is in `w` under its name, bit for bit, and nothing else is.
void check_holds_parameters(const Weights& w, const Megalodon& model) {
  const std::vector<Parameter> parameters = model.named_parameters();
  REQUIRE(w.tensors.size() == parameters.size());
  for (const Parameter& p : parameters) {
    INFO(p.name);
    const auto it = std::find_if(w.tensors.begin(), w.tensors.end(), [&](const auto& t) { return t.first == p.name; });
    REQUIRE(it != w.tensors.end());
    CHECK(same_bytes(it->second, p.tensor));
  }
}

std::string bytes_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::string kTokenizerBytes("\x0a\x00sentencepiece\xff", 16);

// A training checkpoint of a "test" model (seed 7) in a run directory.
fs::path checkpoint_of(const Megalodon& model, const fs::path& run) {
  AdamW optimizer(model.named_parameters(), AdamWOptions{});
  TrainingState state;
  state.step = 3;
  state.tokenizer = "sentencepiece sha256:abc";
  state.run_config = "{}";
  state.tokenizer_model = kTokenizerBytes;
  return CheckpointDirectory((run / "checkpoints").string(), 2).save(model, optimizer, state);
}

}  // namespace

TEST_CASE("weights: every format reads the parameters bit for bit and the conversions round trip", "[nn][weights]") {
  const auto model = model_from_seed(7);
  const fs::path dir = scratch("round_trip");
  const fs::path checkpoint = checkpoint_of(*model, dir / "run");

  std::string what;
  const Weights from_checkpoint = read_weights(checkpoint.string(), &what);
  CHECK(what == "training checkpoint");
  check_holds_parameters(from_checkpoint, *model);
  REQUIRE(from_checkpoint.config);
  CHECK(from_checkpoint.config->to_json() == model->config().to_json());
  CHECK(from_checkpoint.tokenizer == "sentencepiece sha256:abc");
  CHECK(from_checkpoint.tokenizer_model == kTokenizerBytes);
  CHECK(read_weights((dir / "run").string(), &what).tensors.size() == from_checkpoint.tensors.size());
  CHECK(what == "run directory");

  // checkpoint -> safetensors -> HDF5 weights -> safetensors: the same tensors, config and tokenizer.
  const fs::path first = dir / "first.safetensors", h5 = dir / "weights.h5", second = dir / "second.safetensors";
  write_weights_safetensors(first.string(), from_checkpoint);
  const Weights from_safetensors = read_weights(first.string(), &what);
  CHECK(what == "safetensors file");
  check_holds_parameters(from_safetensors, *model);
  CHECK(from_safetensors.config->to_json() == model->config().to_json());
  CHECK(from_safetensors.tokenizer == from_checkpoint.tokenizer);
  Weights with_tokenizer = from_safetensors;
  with_tokenizer.tokenizer_model = kTokenizerBytes;
  write_weights_hdf5(h5.string(), with_tokenizer);
  const Weights from_h5 = read_weights(h5.string(), &what);
  CHECK(what == "HDF5 weights file");
  check_holds_parameters(from_h5, *model);
  CHECK(from_h5.config->to_json() == model->config().to_json());
  CHECK(from_h5.tokenizer_model == kTokenizerBytes);
  write_weights_safetensors(second.string(), from_h5);
  CHECK(bytes_of(second) == bytes_of(first));

  // Loaded into a model initialised otherwise: the parameters become the file's.
  const auto other = model_from_seed(8);
  load_weights(from_h5, *other, h5.string());
  check_holds_parameters(from_checkpoint, *other);
}

TEST_CASE("weights: an export directory supplies config.json and tokenizer.model", "[nn][weights]") {
  const auto model = model_from_seed(9);
  const fs::path dir = scratch("export");
  Weights w;
  for (const Parameter& p : model->named_parameters()) w.tensors.emplace_back(p.name, p.tensor);
  write_weights_safetensors((dir / "model.safetensors").string(), w);  // no config in the metadata
  std::ofstream(dir / "config.json") << model->config().to_official_json();
  std::ofstream(dir / "tokenizer.model", std::ios::binary) << kTokenizerBytes;
  std::string what;
  const Weights back = read_weights(dir.string(), &what);
  CHECK(what == "export directory");
  check_holds_parameters(back, *model);
  REQUIRE(back.config);
  CHECK(back.config->num_layers == model->config().num_layers);
  CHECK(back.config->vocab_size == model->config().vocab_size);
  CHECK(back.tokenizer_model == kTokenizerBytes);
  const auto rebuilt = std::make_shared<Megalodon>(*back.config);
  load_weights(back, *rebuilt, dir.string());
  check_holds_parameters(back, *rebuilt);
}

TEST_CASE("weights: loading is strict and foreign files are named", "[nn][weights]") {
  const auto model = model_from_seed(10);
  Weights w;
  for (const Parameter& p : model->named_parameters()) w.tensors.emplace_back(p.name, p.tensor);
  Weights missing = w;
  missing.take("embed.weight");
  CHECK(contains(error_message([&] { load_weights(missing, *model, "m.h5"); }), "'embed.weight' is missing"));
  Weights extra = w;
  extra.tensors.emplace_back("output.extra", Tensor::zeros({2}));
  CHECK(contains(error_message([&] { load_weights(extra, *model, "m.h5"); }), "'output.extra' is no parameter"));
  MegalodonConfig wider = MegalodonConfig::preset("test");
  wider.vocab_size = 60;
  CHECK(contains(error_message([&] { load_weights(w, Megalodon(wider), "m.h5"); }), "has shape"));
  CHECK(contains(error_message([&] { w.take("nope"); }), "nope"));

  const fs::path dir = scratch("foreign");
  std::ofstream(dir / "consolidated.pth", std::ios::binary) << std::string("PK\x03\x04rest of a zip", 18);
  CHECK(contains(error_message([&] { read_weights((dir / "consolidated.pth").string()); }), "tools/convert_pth.py"));
  std::ofstream(dir / "notes.txt") << "hello";
  CHECK(contains(error_message([&] { read_weights((dir / "notes.txt").string()); }), "68 65 6c 6c 6f"));
  CHECK(contains(error_message([&] { read_weights(dir.string()); }), "neither model.safetensors"));
  CHECK(contains(error_message([&] { read_weights((dir / "absent.h5").string()); }), "does not exist"));
}

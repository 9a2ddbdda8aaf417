// RunConfig (apps/lib/run_config.h): the shipped configs load and validate, the resolved JSON round-trips,
// --set overrides reach every section, and unknown keys, wrong types and bad values are clear errors.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "apps/lib/run_config.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;

TEST_CASE("run config: every shipped config loads, validates and round-trips", "[apps][run_config]") {
  const std::vector<std::string> names = RunConfig::known_config_names();
  for (const char* required : {"tiny", "mega200M", "paper7b"})
    CHECK(std::find(names.begin(), names.end(), required) != names.end());
  for (const std::string& name : names) {
    INFO(name);
    const RunConfig c = RunConfig::load(name);
    CHECK_NOTHROW(c.validate());
    CHECK(c.name == name);
    const RunConfig again = RunConfig::from_json(c.to_json());
    CHECK(again.to_json() == c.to_json());
  }
}

TEST_CASE("run config: the presets of the spec", "[apps][run_config]") {
  const RunConfig paper = RunConfig::load("paper7b");
  CHECK(paper.model.chunk_size == 4096);
  CHECK(paper.model.rope_base == 100000.0);
  CHECK(paper.model.num_layers == 32);
  CHECK(paper.optimizer.lr == 3.5e-4);
  CHECK(paper.schedule.warmup_steps == 2500);
  CHECK(paper.train.seq_len == 32768);
  const RunConfig m = RunConfig::load("mega200M");
  CHECK(m.model.model_dim == 1024);
  CHECK(m.model.num_layers == 12);
  CHECK(RunConfig::load("tiny").model.vocab_size == 256);
}

TEST_CASE("run config: --set overrides any key", "[apps][run_config]") {
  RunConfig c = RunConfig::load("tiny");
  c.set("model.num_layers=4");
  c.set("train.steps=77");
  c.set("optimizer.lr=0.01");
  c.set("schedule.decay=linear");
  c.set("optimizer.no_weight_decay=[\"norm\",\"bias\"]");
  c.set("train.dtype=bf16");
  CHECK(c.model.num_layers == 4);
  CHECK(c.train.steps == 77);
  CHECK(c.optimizer.lr == 0.01);
  CHECK(c.schedule.decay == "linear");
  CHECK(c.optimizer.no_weight_decay == std::vector<std::string>{"norm", "bias"});
  CHECK(c.train.dtype == "bf16");
  c.set("model.preset=mega200M");
  CHECK(c.model.model_dim == 1024);
  // The override survives the JSON round trip (what checkpoints store).
  CHECK(RunConfig::from_json(c.to_json()).model.model_dim == 1024);
}

TEST_CASE("run config: bad keys and values are clear errors", "[apps][run_config]") {
  RunConfig c;
  CHECK(contains(error_message([&] { c.set("train.stepz=5"); }), "train.stepz"));
  CHECK(contains(error_message([&] { c.set("model.layerz=5"); }), "layerz"));
  CHECK(contains(error_message([&] { c.set("train.steps=many"); }), "train.steps"));
  CHECK(contains(error_message([&] { c.set("train.steps"); }), "section.key=value"));
  CHECK(contains(error_message([&] { c.set("model.preset=huge"); }), "huge"));
  CHECK(contains(error_message([&] { RunConfig::from_json("{\"train\": {\"steps\": 1.5}}"); }), "train.steps"));
  CHECK(contains(error_message([&] { RunConfig::from_json("{\"optimiser\": {\"lr\": 1}}"); }), "optimiser"));
  CHECK(contains(error_message([&] { RunConfig::from_json("{\"train\": {"); }), "JSON"));
  CHECK(contains(error_message([&] { RunConfig::load("no_such_config"); }), "tiny"));
  RunConfig bad;
  bad.train.steps = 0;
  CHECK(contains(error_message([&] { bad.validate(); }), "train.steps"));
  bad = RunConfig();
  bad.train.dtype = "f16";
  CHECK(contains(error_message([&] { bad.validate(); }), "train.dtype"));
  bad = RunConfig();
  bad.schedule.decay = "exponential";
  CHECK(contains(error_message([&] { bad.validate(); }), "exponential"));
}

TEST_CASE("run config: a numeric key outside its range is refused naming the key and the range", "[apps][run_config]") {
  struct Case {
    const char* assignment;
    const char* message;
  };
  for (const Case& bad : {
           Case{"optimizer.lr=0", "config: optimizer.lr must be in (0, inf), got 0"},
           Case{"optimizer.beta1=1", "config: optimizer.beta1 must be in [0, 1), got 1"},
           Case{"optimizer.beta2=-0.5", "config: optimizer.beta2 must be in [0, 1), got -0.5"},
           Case{"optimizer.eps=0", "config: optimizer.eps must be in (0, 1], got 0"},
           Case{"optimizer.weight_decay=-1", "config: optimizer.weight_decay must be in [0, inf), got -1"},
           Case{"optimizer.weight_decay=1000", "optimizer.lr * optimizer.weight_decay must be < 1"},
           Case{"optimizer.clip_grad_norm=-1", "config: optimizer.clip_grad_norm must be in [0, inf), got -1"},
           Case{"schedule.init_ratio=1.5", "config: schedule.init_ratio must be in [0, 1], got 1.5"},
           Case{"schedule.min_lr_ratio=-0.1", "config: schedule.min_lr_ratio must be in [0, 1], got -0.1"},
           Case{"train.steps=1000000000001", "config: train.steps must be in [1, 1000000000000], got 1000000000001"},
           Case{"train.batch_size=2147483648", "config: train.batch_size must be in [1, 2147483647], got 2147483648"},
           Case{"train.seed=-1", "config: train.seed must be in [0, inf), got -1"},
           Case{"train.peak_tflops=-2", "config: train.peak_tflops must be in [0, 1000000], got -2"},
           Case{"eval.every=-1", "config: eval.every must be in [0, 1000000000000], got -1"},
           Case{"data.val_fraction=1", "config: data.val_fraction must be in (0, 1), got 1"},
           Case{"parallel.zero=2", "config: parallel.zero must be in [0, 1], got 2"},
           Case{"parallel.bucket_mb=0", "config: parallel.bucket_mb must be in [0.001, 1048576], got 0"},
           Case{"parallel.timeout_s=1e300", "config: parallel.timeout_s must be in (0, 1000000], got 1e+300"},
           Case{"model.dropout=1", "config: dropout must be in [0, 1), got 1"},
           Case{"model.norm_eps=5", "config: norm_eps must be in (0, 1], got 5"}}) {
    RunConfig c = RunConfig::load("tiny");
    c.set(bad.assignment);
    const std::string message = error_message([&] { c.validate(); });
    INFO(bad.assignment << ": " << message);
    CHECK(contains(message, bad.message));
  }
  // NaN and infinity: JSON has neither (a --set of "nan" or "1e999" is no number: a wrong type, naming the key),
  // but code and fuzzers can set them; the ranges refuse them.
  RunConfig c = RunConfig::load("tiny");
  CHECK(contains(error_message([&] { c.set("optimizer.lr=nan"); }), "'optimizer.lr': wrong type"));
  CHECK(contains(error_message([&] { c.set("optimizer.lr=1e999"); }), "'optimizer.lr': wrong type"));
  c.optimizer.lr = std::numeric_limits<double>::infinity();
  CHECK(contains(error_message([&] { c.validate(); }), "optimizer.lr must be in (0, inf), got inf"));
  c = RunConfig::load("tiny");
  c.optimizer.clip_grad_norm = std::nan("");
  CHECK(contains(error_message([&] { c.validate(); }), "optimizer.clip_grad_norm must be in [0, inf), got nan"));
  // --help shows each numeric key's range; range_of gives it to a flag that sets the key.
  const std::string help = RunConfig::describe_keys(RunConfig::load("tiny"));
  CHECK(contains(help, "optimizer.beta1  [0.9]  in [0, 1)  AdamW beta1"));
  CHECK(contains(help, "model.dropout  [0.0]  in [0, 1)"));
  CHECK(contains(help, "schedule.decay  [\"cosine\"]  constant | linear | cosine"));
  CHECK(RunConfig::range_of("parallel.timeout_s")->describe() == "(0, 1000000]");
  CHECK_FALSE(RunConfig::range_of("parallel.backend"));
}

TEST_CASE("run config: text that is not UTF-8 is refused before it enters the config's JSON", "[apps][run_config]") {
  // Found by tests/fuzz/fuzz_config.cpp: such a value escaped as a JSON library error from the message that
  // quoted it, and one the config kept (a name) made writing the config throw the same.
  RunConfig c;
  for (const char* assignment : {"model.efficient_attn=fu\xf8", "model.name=\xff", "optimizer.no_weight_decay=\xff",
                                 "train.dtype=\xc3"})
    CHECK(contains(error_message([&] { c.set(assignment); }), "not UTF-8 text"));
  CHECK(contains(error_message([&] { c.model.set("name", "\xff"); }), "not UTF-8 text"));
  c.set("model.name=caf\xc3\xa9");  // UTF-8 beyond ASCII is text
  CHECK(RunConfig::from_json(c.to_json()).model.name == "caf\xc3\xa9");
  // A config file whose name is not UTF-8 loads; the run is named "custom" rather than after the file.
  const std::filesystem::path path = process_scratch() / "\xff.json";
  std::ofstream(path) << R"({"model": {"preset": "test"}})";
  const RunConfig loaded = RunConfig::load(path.string());
  CHECK(loaded.name == "custom");
  CHECK_NOTHROW(loaded.to_json());
  std::filesystem::remove(path);
}

TEST_CASE("run config: a config file by path, with its errors named", "[apps][run_config]") {
  const std::filesystem::path path = process_scratch() / "run_config.json";
  std::ofstream(path) << R"({"model": {"preset": "test", "num_layers": 3}, "train": {"steps": 9}})";
  const RunConfig c = RunConfig::load(path.string());
  CHECK(c.model.num_layers == 3);
  CHECK(c.model.vocab_size == 50);
  CHECK(c.train.steps == 9);
  std::ofstream(path) << R"({"model": {"preset": "test", "num_layers": "three"}})";
  const std::string message = error_message([&] { RunConfig::load(path.string()); });
  CHECK(contains(message, path.string()));
  CHECK(contains(message, "num_layers"));
  std::filesystem::remove(path);
}

TEST_CASE("run config: differences between resolved configs", "[apps][run_config]") {
  RunConfig a = RunConfig::load("tiny"), b = a;
  CHECK(first_run_config_difference(a.to_json(), b.to_json(), {}).empty());
  b.train.steps = 5;
  CHECK(first_run_config_difference(a.to_json(), b.to_json(), {}) == "train.steps");
  CHECK(first_run_config_difference(a.to_json(), b.to_json(), {"train.steps"}).empty());
  b.model.chunk_size = 32;
  CHECK(first_run_config_difference(a.to_json(), b.to_json(), {"train.steps"}) == "model.chunk_size");
  // A checkpoint's stored config is text from a file (unchecked in a version-1 file): an mgl::Error, not the
  // JSON library's exception.
  CHECK(contains(error_message([&] { first_run_config_difference("{\"train\": ", a.to_json(), {}); }),
                 "not a JSON object"));
  CHECK(contains(error_message([&] { first_run_config_difference(a.to_json(), "[1]", {}); }), "not a JSON object"));
}

TEST_CASE("run config: an official ModelConf file configures the model of a run", "[apps][run_config]") {
  const std::filesystem::path dir = scratch("official_config");
  const std::filesystem::path file = dir / "official_small.json";
  std::ofstream(file) << R"({"num_layers": 2, "model_dim": 64, "z_dim": 32, "value_dim": 64, "num_heads": 1,
    "ffn_hidden_dim": 128, "cema_ndim": 4, "chunk_size": 32, "efficient_attn": null, "init_mode": "he",
    "vocab_size": -1, "output_size": -1, "norm_num_groups": 8, "norm_affine": true, "norm_eps": 1e-05,
    "rope_base": null, "dropout": 0.0, "hidden_dropout": 0.0, "attention_dropout": 0.0, "swiglu": false,
    "rescale_nffn": false, "scale_emb": false, "share_emb": true, "layerwise_ckpt": false})";
  const RunConfig c = RunConfig::load(file.string());
  CHECK_NOTHROW(c.validate());
  CHECK(c.name == "official_small");
  CHECK(c.model.num_layers == 2);
  CHECK(c.model.share_embedding);
  CHECK(c.model.vocab_size == 32000);  // -1 (from the tokenizer) keeps the default
  CHECK(c.train.steps == RunConfig().train.steps);
  REQUIRE(c.ignored_keys.size() == 3);  // init_mode, vocab_size -1, output_size
  // The same keys inside the model section of a run config.
  const RunConfig nested = RunConfig::from_json(R"({"model": {"preset": "tiny", "share_emb": true, "rope_base": null}})");
  CHECK(nested.model.share_embedding);
  CHECK(nested.model.rope_base == 10000.0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("run config: every unknown key of a file in one error", "[apps][run_config]") {
  const std::string message = error_message([] {
    RunConfig::from_json(R"({"optimiser": {"lr": 1}, "train": {"stepz": 3, "steps": 1.5}, "model": {"layerz": 2}})");
  });
  for (const char* part : {"optimiser", "train.stepz", "train.steps", "layerz"}) CHECK(contains(message, part));
}

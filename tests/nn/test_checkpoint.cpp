// nn/ training checkpoints on a tiny MEGALODON ("test" preset): every tensor round trips bit for bit,
// resuming from a checkpoint continues exactly like the uninterrupted run, the checkpoint directory
// keeps the newest K and skips a corrupted newest file, and every kind of bad checkpoint is an
// mgl::Error that names the problem (config key, missing or misshapen tensor, truncated file).
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>

#include <hdf5.h>

#include "autograd/engine.h"
#include "nn/checkpoint.h"
#include "nn/grad_clip.h"
#include "nn/hdf5_file.h"
#include "nn/lr_schedule.h"
#include "ops/ops.h"
#include "support/errors.h"
#include "support/scratch.h"
#include "support/testing.h"

using namespace mgl;
using namespace mgl::nn;
using namespace mgl::testing;

namespace {

// A model and its optimizer, initialised from `seed`.
struct Run {
  std::shared_ptr<Megalodon> model;
  std::unique_ptr<AdamW> optimizer;

  explicit Run(uint64_t seed, const MegalodonConfig& config = MegalodonConfig::preset("test")) {
    Generator gen(seed);
    InitOptions init;
    init.generator = &gen;
    model = std::make_shared<Megalodon>(config, init);
    optimizer = std::make_unique<AdamW>(model->named_parameters(),
                                        AdamWOptions{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1});
  }

  // One training step on the synthetic batch number `step` (deterministic in the step alone).
  void train_step(int64_t step) {
    const LrSchedule schedule{.decay = LrDecay::cosine, .peak_lr = 3e-3, .warmup_steps = 2, .total_steps = 8,
                              .min_lr_ratio = 0.1};
    const Tensor tokens = random_ids({2, 13}, model->config().vocab_size, 1000 + static_cast<uint64_t>(step));
    const Tensor ids = slice(tokens, 1, 0, 12), targets = slice(tokens, 1, 1, 13);
    optimizer->options().lr = schedule.lr(step);
    optimizer->zero_grad();
    backward(Megalodon::loss(model->forward(contiguous(ids)), contiguous(targets)));
    clip_grad_norm_(optimizer->parameters(), 1.0);
    optimizer->step();
  }
};

TrainingState state_at(int64_t step) {
  return {.step = step,
          .rng_seed = 0xF00DFACE12345678ull,  // high bit set: survives the int64 attribute
          .rng_offset = 77,
          .data_position = 26 * step,
          .tokenizer = "llama2-32k sha256:abc",
          .run_config = R"({"batch": 2})",
          .tokenizer_model = std::string("\x0a\x00model\xff bytes", 13)};
}

// Every parameter, moment and step count of `a` equals that of `b`, bit for bit.
void check_identical(const Run& a, const Run& b) {
  const std::vector<Parameter> pa = a.model->named_parameters(), pb = b.model->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    CHECK(pa[i].tensor.to_vector<float>() == pb[i].tensor.to_vector<float>());
    CHECK(a.optimizer->exp_avg(i).to_vector<float>() == b.optimizer->exp_avg(i).to_vector<float>());
    CHECK(a.optimizer->exp_avg_sq(i).to_vector<float>() == b.optimizer->exp_avg_sq(i).to_vector<float>());
    CHECK(a.optimizer->step_count(i) == b.optimizer->step_count(i));
  }
}

// Copies checkpoint `from` to `to`, letting `edit` change each dataset (return an undefined tensor to
// drop it; the tokenizer model's bytes can only be dropped), and adds the datasets `added`.
void rewrite(const std::string& from, const std::string& to,
             const std::function<Tensor(const std::string&, const Tensor&)>& edit,
             const std::vector<std::pair<std::string, Tensor>>& added = {}) {
  const Hdf5File in(from, Hdf5File::Mode::read);
  Hdf5File out(to, Hdf5File::Mode::create);
  for (const char* name : {"magic", "model_config", "run_config", "tokenizer"})
    out.set_attribute(name, in.string_attribute(name));
  for (const char* name : {"version", "step", "rng_seed", "rng_offset", "data_position"})
    out.set_attribute(name, in.int_attribute(name));
  for (const std::string& name : in.dataset_names()) {
    if (name == "tokenizer/model") {  // bytes, not a tensor: kept unless dropped
      if (edit(name, Tensor::zeros({1})).defined()) out.write_bytes(name, in.read_bytes(name));
      continue;
    }
    const Tensor t = edit(name, in.read(name));
    if (t.defined()) out.write(name, t);
  }
  for (const auto& [name, t] : added) out.write(name, t);
  out.seal_attributes();  // a well-formed file whose contents are wrong: the loader's checks must catch them
}

// Flips one bit of the stored bytes of dataset `name` in the file itself (its checksum unchanged), as a
// disk or a copy might.
void flip_stored_bit(const std::string& path, const std::string& name, int64_t byte) {
  int64_t offset = -1;
  {
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t dataset = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    offset = static_cast<int64_t>(H5Dget_offset(dataset));
    H5Dclose(dataset);
    H5Fclose(file);
  }
  REQUIRE(offset > 0);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset + byte);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x40;  // an exponent bit of a little-endian f32's top byte when byte % 4 == 3
  f.seekp(offset + byte);
  f.write(&c, 1);
}

}  // namespace

TEST_CASE("checkpoint: model and optimizer state round trip bit for bit", "[nn][checkpoint]") {
  const auto dir = scratch("roundtrip");
  Run trained(11);
  for (int64_t step = 0; step < 3; ++step) trained.train_step(step);
  const std::string path = (dir / "ckpt.h5").string();
  save_checkpoint(path, *trained.model, *trained.optimizer, state_at(3));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));

  Run fresh(99);  // different initialisation, zero optimizer state
  const TrainingState state = load_checkpoint(path, *fresh.model, *fresh.optimizer);
  check_identical(trained, fresh);
  const TrainingState expected = state_at(3);
  CHECK(state.step == expected.step);
  CHECK(state.rng_seed == expected.rng_seed);
  CHECK(state.rng_offset == expected.rng_offset);
  CHECK(state.data_position == expected.data_position);
  CHECK(state.tokenizer == expected.tokenizer);
  CHECK(state.run_config == expected.run_config);
  CHECK(state.tokenizer_model == expected.tokenizer_model);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: resuming continues exactly like the uninterrupted run", "[nn][checkpoint]") {
  const auto dir = scratch("resume");
  constexpr int64_t kSteps = 6, kSaveAt = 3;
  Run uninterrupted(5);
  for (int64_t step = 0; step < kSteps; ++step) uninterrupted.train_step(step);

  Run first(5);
  for (int64_t step = 0; step < kSaveAt; ++step) first.train_step(step);
  const std::string path = (dir / "ckpt.h5").string();
  save_checkpoint(path, *first.model, *first.optimizer, state_at(kSaveAt));

  Run resumed(1234);
  const TrainingState state = load_checkpoint(path, *resumed.model, *resumed.optimizer);
  for (int64_t step = state.step; step < kSteps; ++step) resumed.train_step(step);
  check_identical(uninterrupted, resumed);
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint directory: keeps the newest K, skips a corrupted newest file", "[nn][checkpoint]") {
  const auto dir = scratch("directory");
  Run run(3);
  CheckpointDirectory checkpoints(dir.string(), 2);
  CHECK(checkpoints.path_for(42) == (dir / "step_00000042.h5").string());
  CHECK_FALSE(checkpoints.newest_valid().has_value());
  for (int64_t step = 1; step <= 5; ++step) CHECK(checkpoints.save(*run.model, *run.optimizer, state_at(step)) ==
                                                    checkpoints.path_for(step));
  const auto kept = checkpoints.list();
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].first == 4);
  CHECK(kept[1].first == 5);
  CHECK(checkpoints.newest_valid() == checkpoints.path_for(5));

  // The newest file truncated (a crash while copying it elsewhere, a full disk): resume from step 4.
  const std::string newest = checkpoints.path_for(5);
  std::filesystem::resize_file(newest, std::filesystem::file_size(newest) / 2);
  // Another step's file that is not HDF5 at all, and an unrelated file, are skipped or ignored.
  std::ofstream(checkpoints.path_for(6)) << "not a checkpoint";
  std::ofstream(dir / "notes.txt") << "step_00000009.h5 is not here";
  std::vector<std::string> skipped;
  CHECK(checkpoints.newest_valid(&skipped) == checkpoints.path_for(4));
  REQUIRE(skipped.size() == 2);
  CHECK(contains(skipped[0], "step_00000006.h5"));
  CHECK(contains(skipped[1], "step_00000005.h5"));
  Run fresh(8);
  CHECK(contains(error_message([&] { load_checkpoint(newest, *fresh.model, *fresh.optimizer); }), "truncated"));
  CHECK(contains(error_message([&] { CheckpointDirectory(dir.string(), 0); }), "keep_last must be >= 1"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: config mismatch, missing, extra and misshapen tensors are named", "[nn][checkpoint]") {
  const auto dir = scratch("errors");
  Run run(21);
  run.train_step(0);
  const std::string path = (dir / "good.h5").string();
  save_checkpoint(path, *run.model, *run.optimizer, state_at(1));

  MegalodonConfig other = MegalodonConfig::preset("test");
  other.rope_base = 500000;  // same shapes, different model
  Run different(21, other);
  CHECK(contains(error_message([&] { load_checkpoint(path, *different.model, *different.optimizer); }),
                 "model config differs from this model's at key 'rope_base'"));

  const std::string missing = (dir / "missing.h5").string();
  rewrite(path, missing, [](const std::string& name, const Tensor& t) {
    return name == "model/layers.1.mega.wz.weight" ? Tensor() : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(missing, *run.model, *run.optimizer); }),
                 "parameter 'model/layers.1.mega.wz.weight' is missing"));

  const std::string no_moment = (dir / "no_moment.h5").string();
  rewrite(path, no_moment, [](const std::string& name, const Tensor& t) {
    return name == "optimizer/embed.weight/exp_avg_sq" ? Tensor() : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(no_moment, *run.model, *run.optimizer); }),
                 "optimizer state 'optimizer/embed.weight/exp_avg_sq' is missing"));

  const std::string misshapen = (dir / "misshapen.h5").string();
  rewrite(path, misshapen, [](const std::string& name, const Tensor& t) {
    return name == "model/output.final_norm.bias" ? Tensor::zeros({3}) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(misshapen, *run.model, *run.optimizer); }),
                 "parameter 'model/output.final_norm.bias' has shape"));

  const std::string bad_moment = (dir / "bad_moment.h5").string();
  rewrite(path, bad_moment, [](const std::string& name, const Tensor& t) {
    return name == "optimizer/embed.weight/exp_avg" ? Tensor::zeros({2, 2}) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(bad_moment, *run.model, *run.optimizer); }),
                 "optimizer state 'optimizer/embed.weight/exp_avg' has shape"));

  // An extra tensor (a parameter this model does not have) is refused.
  const std::string extra = (dir / "extra.h5").string();
  rewrite(path, extra, [](const std::string&, const Tensor& t) { return t; },
          {{"model/layers.2.mega.wz.weight", Tensor::zeros({8, 16})}});
  CHECK(contains(error_message([&] { load_checkpoint(extra, *run.model, *run.optimizer); }),
                 "tensor 'model/layers.2.mega.wz.weight' belongs to no parameter of this model"));

  // Not a checkpoint: an HDF5 file without the format attributes, and no file at all.
  const std::string plain = (dir / "plain.h5").string();
  { Hdf5File(plain, Hdf5File::Mode::create).write("x", Tensor::zeros({1})); }
  CHECK(contains(error_message([&] { validate_checkpoint(plain); }), "not a megalodon.cpp training checkpoint"));
  CHECK(contains(error_message([&] { load_checkpoint((dir / "absent.h5").string(), *run.model, *run.optimizer); }),
                 "cannot open"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: damaged files, integer weights and non-finite values are refused, naming the tensor",
          "[nn][checkpoint]") {
  const auto dir = scratch("damaged");
  Run run(5);
  run.train_step(0);
  const std::string path = (dir / "ckpt.h5").string();
  save_checkpoint(path, *run.model, *run.optimizer, state_at(3));
  validate_checkpoint(path);
  Run fresh(6);

  // A flipped exponent bit in a weight (-0.013 -> -4.5e36 in the report that found it): its checksum fails.
  const std::string flipped = (dir / "flipped.h5").string();
  std::filesystem::copy_file(path, flipped);
  flip_stored_bit(flipped, "model/embed.weight", 7);
  for (const std::string& message : {error_message([&] { validate_checkpoint(flipped); }),
                                     error_message([&] { load_checkpoint(flipped, *fresh.model, *fresh.optimizer); }),
                                     error_message([&] { load_checkpoint_model(flipped, *fresh.model); })})
    CHECK(contains(message, "dataset 'model/embed.weight' fails its checksum"));

  // An edited attribute (the step) without the attributes' checksum: refused on opening.
  const std::string edited = (dir / "edited.h5").string();
  std::filesystem::copy_file(path, edited);
  {
    const hid_t file = H5Fopen(edited.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t attribute = H5Aopen(file, "step", H5P_DEFAULT);
    const int64_t step = 1000;
    H5Awrite(attribute, H5T_NATIVE_INT64, &step);
    H5Aclose(attribute);
    H5Fclose(file);
  }
  CHECK(contains(error_message([&] { validate_checkpoint(edited); }), "root attributes fail their checksum"));

  // Well-formed files whose values are wrong: an integer dataset for a weight, a NaN, an inf moment.
  const std::string integers = (dir / "integers.h5").string();
  rewrite(path, integers, [](const std::string& name, const Tensor& t) {
    return name == "model/layers.0.mega.wz.weight" ? cast(t, DType::i32) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(integers, *fresh.model, *fresh.optimizer); }),
                 "parameter 'model/layers.0.mega.wz.weight' is stored as i32; expected floating-point values"));
  const std::string nan = (dir / "nan.h5").string();
  rewrite(path, nan, [](const std::string& name, const Tensor& t) {
    return name == "model/output.final_norm.weight" ? div(t, Tensor::zeros(t.shape())) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint_model(nan, *fresh.model); }),
                 "parameter 'model/output.final_norm.weight' holds NaN or infinite values"));
  const std::string inf = (dir / "inf.h5").string();
  rewrite(path, inf, [](const std::string& name, const Tensor& t) {
    return name == "optimizer/embed.weight/exp_avg_sq" ? add(t, 1e300) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint(inf, *fresh.model, *fresh.optimizer); }),
                 "optimizer state 'optimizer/embed.weight/exp_avg_sq' holds NaN or infinite values"));

  // A directory whose every checkpoint is damaged gives none to resume from, and says why for each.
  CheckpointDirectory checkpoints((dir / "run").string(), 3);
  checkpoints.save(*run.model, *run.optimizer, state_at(1));
  flip_stored_bit(checkpoints.path_for(1), "model/embed.weight", 3);
  std::vector<std::string> skipped;
  CHECK_FALSE(checkpoints.newest_valid(&skipped).has_value());
  REQUIRE(skipped.size() == 1);
  CHECK(contains(skipped[0], "step_00000001.h5: dataset 'model/embed.weight' fails its checksum"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: first_config_difference", "[nn][checkpoint]") {
  CHECK_FALSE(first_config_difference(R"({"a": 1, "name": "x"})", R"({"a": 1, "name": "y"})").has_value());
  CHECK(first_config_difference(R"({"a": 1, "b": 2})", R"({"a": 1, "b": 3})") == "b");
  CHECK(first_config_difference(R"({"a": 1})", R"({"a": 1, "c": true})") == "c");
  CHECK(first_config_difference(R"({"a": 1, "d": 0})", R"({"a": 1})") == "d");
  CHECK(contains(error_message([] { (void)first_config_difference("not json", "{}"); }), "not a JSON object"));
}

TEST_CASE("checkpoint: the info and the model alone, for inference", "[nn][checkpoint]") {
  const auto dir = scratch("inference");
  MegalodonConfig config = MegalodonConfig::preset("test");
  config.timestep_norm_mode = "exact";
  Run trained(31, config);
  trained.train_step(0);
  const std::string path = (dir / "ckpt.h5").string();
  save_checkpoint(path, *trained.model, *trained.optimizer, state_at(7));

  const CheckpointInfo info = read_checkpoint_info(path);
  CHECK(info.model_config_json == config.to_json());
  CHECK(info.model_config.to_json() == config.to_json());
  CHECK(info.state.step == 7);
  CHECK(info.state.tokenizer == state_at(7).tokenizer);
  CHECK(info.state.tokenizer_model == state_at(7).tokenizer_model);
  CHECK(info.state.run_config == state_at(7).run_config);

  // The parameters alone, into a freshly initialised model of the stored config.
  Megalodon model(info.model_config);
  load_checkpoint_model(path, model);
  const std::vector<Parameter> want = trained.model->named_parameters(), got = model.named_parameters();
  REQUIRE(want.size() == got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].name);
    CHECK(got[i].tensor.to_vector<float>() == want[i].tensor.to_vector<float>());
  }

  // As strict as load_checkpoint about the model; the optimizer state is not needed.
  MegalodonConfig other = config;
  other.norm_eps = 1e-6;
  CHECK(contains(error_message([&] { load_checkpoint_model(path, Megalodon(other)); }),
                 "model config differs from this model's at key 'norm_eps'"));
  const std::string no_optimizer = (dir / "no_optimizer.h5").string();
  rewrite(path, no_optimizer, [](const std::string& name, const Tensor& t) {
    return name.rfind("optimizer/", 0) == 0 ? Tensor() : t;
  });
  load_checkpoint_model(no_optimizer, model);
  const std::string missing = (dir / "missing.h5").string();
  rewrite(path, missing, [](const std::string& name, const Tensor& t) { return name == "model/embed.weight" ? Tensor() : t; });
  CHECK(contains(error_message([&] { load_checkpoint_model(missing, model); }), "parameter 'model/embed.weight' is missing"));
  CHECK(contains(error_message([&] { load_checkpoint_model(missing, model); }), "missing.h5"));
  const std::string misshapen = (dir / "misshapen.h5").string();
  rewrite(path, misshapen, [](const std::string& name, const Tensor& t) {
    return name == "model/layers.0.mega.cema.alpha" ? Tensor::zeros({2}) : t;
  });
  CHECK(contains(error_message([&] { load_checkpoint_model(misshapen, model); }),
                 "parameter 'model/layers.0.mega.cema.alpha' has shape [2]"));
  const std::string extra = (dir / "extra.h5").string();
  rewrite(path, extra, [](const std::string&, const Tensor& t) { return t; }, {{"model/head.bias", Tensor::zeros({4})}});
  CHECK(contains(error_message([&] { load_checkpoint_model(extra, model); }),
                 "tensor 'model/head.bias' belongs to no parameter of this model"));

  // A checkpoint from before the tokenizer model was stored: its bytes are empty.
  const std::string older = (dir / "older.h5").string();
  rewrite(path, older, [](const std::string& name, const Tensor& t) { return name == "tokenizer/model" ? Tensor() : t; });
  CHECK(read_checkpoint_info(older).state.tokenizer_model.empty());
  load_checkpoint_model(older, model);

  const std::string plain = (dir / "plain.h5").string();
  { Hdf5File(plain, Hdf5File::Mode::create).write("x", Tensor::zeros({1})); }
  CHECK(contains(error_message([&] { read_checkpoint_info(plain); }), "not a megalodon.cpp training checkpoint"));
  CHECK(contains(error_message([&] { load_checkpoint_model(plain, model); }), "not a megalodon.cpp training checkpoint"));
  std::filesystem::remove_all(dir);
}

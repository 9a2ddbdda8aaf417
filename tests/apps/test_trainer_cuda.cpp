// The training loop on CUDA: bf16 mixed-precision training of the tiny model learns (the CPU test's
// bound), its first loss agrees with the f32 CPU run, a resumed run replays the uninterrupted one,
// out-of-memory is a clear error, and --profile reports the kernels of its window of steps.
#include <cmath>
#include <string>

#include "apps/trainer_fixtures.h"

using namespace mgl;
using namespace mgl::apps;
using namespace mgl::testing;
namespace fs = std::filesystem;

MGL_CUDA_TEST_FILE

TEST_CASE("trainer cuda: bf16 mixed precision learns, starting where the CPU starts", "[apps][trainer][cuda]") {
  const fs::path dir = scratch("cuda_learns");
  const PreparedData data = generated_sample(dir, 2'000'000);
  Trainer gpu(options_for(small_run(200), data, dir / "gpu", false, Device::cuda(0)));
  CHECK(gpu.compute_dtype() == DType::bf16);
  Trainer cpu(options_for(small_run(200), data, dir / "cpu"));
  // Same seed: same initial weights and the same first batch; bf16 activations cost ~1e-2 relative.
  const double first_gpu = gpu.accumulate_gradients(), first_cpu = cpu.accumulate_gradients();
  CHECK(std::abs(first_gpu / first_cpu - 1) < 1e-2);

  Trainer fresh(options_for(small_run(200), data, dir / "gpu_run", false, Device::cuda(0)));
  const TrainingSummary summary = fresh.run();
  REQUIRE(summary.validation);
  CHECK(summary.validation->loss < 1.1);  // the CPU test's bound (measured 0.79 to 0.86 in f32)
  CHECK(summary.peak_device_bytes > 0);
  fs::remove_all(dir);
}

TEST_CASE("trainer cuda: a resumed run follows the uninterrupted one", "[apps][trainer][cuda]") {
  const fs::path dir = scratch("cuda_resume");
  const PreparedData data = generated_sample(dir, 400'000);
  RunConfig c = small_run(12);
  c.train.checkpoint_every = 5;
  c.train.keep_checkpoints = 5;
  Trainer uninterrupted(options_for(c, data, dir / "a", false, Device::cuda(0)));
  uninterrupted.run();
  copy_as_interrupted(dir / "a", dir / "b", 10);
  Trainer resumed(options_for(c, data, dir / "b", true, Device::cuda(0)));
  REQUIRE(resumed.step() == 10);
  resumed.run();
  const auto a = read_metrics(dir / "a"), b = read_metrics(dir / "b");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].contains("loss")) continue;
    INFO("step " << a[i]["step"]);
    // Within bf16 noise (the kernels are deterministic, so in practice equal).
    CHECK(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) < 1e-2);
  }
  fs::remove_all(dir);
}

TEST_CASE("trainer cuda: out of memory is a clear error", "[apps][trainer][cuda]") {
  const fs::path dir = scratch("cuda_oom");
  const PreparedData data = generated_sample(dir, 400'000);
  RunConfig c = small_run(2);
  // 128K tokens a step through 8 wide layers: ~45 GB of saved bf16 activations per layer, far beyond
  // one GPU's memory (the weights and moments, ~30 GB, still fit, so the failure is in the step).
  c.model.model_dim = 4096;
  c.model.value_dim = 8192;
  c.model.ffn_hidden_dim = 16384;
  c.model.num_layers = 8;
  c.train.batch_size = 64;
  c.train.seq_len = 2048;
  const std::string message = error_message([&] {
    Trainer trainer(options_for(c, data, dir / "run", false, Device::cuda(0)));
    trainer.run();
  });
  CHECK(contains(message, "out of memory"));
  CHECK(contains(message, "cuda:0"));
  fs::remove_all(dir);
}

TEST_CASE("trainer cuda: the profiler reports the kernels of its window", "[apps][trainer][cuda]") {
  const fs::path dir = scratch("cuda_profile");
  const PreparedData data = generated_sample(dir, 400'000);
  TrainerOptions o = options_for(small_run(5), data, dir / "run", false, Device::cuda(0));
  o.profile.enabled = true;
  o.profile.after = 1;
  o.profile.steps = 2;  // steps 2 and 3
  o.profile.json = (dir / "kernels.json").string();
  Trainer(o).run();
  std::ifstream in(o.profile.json);
  REQUIRE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  CHECK(j["steps"] == 2);
  CHECK(j["dropped_records"] == 0);
  CHECK(j["busy_ms_per_step"].get<double>() > 0);
  REQUIRE(!j["kernels"].empty());
  // Every activity of a step runs once per step at least. The largest row may be a copy (a small model's
  // same-dtype copies are cudaMemcpyAsync calls, cuda/copy.cu), but kernels are there too.
  CHECK(j["kernels"][0]["count"].get<int64_t>() >= 2);
  bool any_kernel = false;
  for (const nlohmann::json& row : j["kernels"]) {
    const std::string kind = row["kind"].get<std::string>();
    CHECK((kind == "kernel" || kind == "memcpy" || kind == "memset"));
    any_kernel = any_kernel || kind == "kernel";
  }
  CHECK(any_kernel);

  // A run that ends inside the window reports the steps it profiled.
  o.out = (dir / "short").string();
  o.config.train.steps = 2;
  o.config.schedule.warmup_steps = 1;
  o.profile.json = (dir / "short.json").string();
  Trainer(o).run();
  std::ifstream short_in(o.profile.json);
  REQUIRE(short_in.good());
  CHECK(nlohmann::json::parse(short_in)["steps"] == 1);
  fs::remove_all(dir);
}

#pragma once
// Shared by the trainer tests (CPU and CUDA): a prepared sample of the generated
// text (support/synthetic_text.h), and a small run of the tiny model.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/lib/prepare_data.h"
#include "apps/lib/trainer.h"
#include "support/scratch.h"
#include "support/synthetic_text.h"
#include "support/testing.h"

namespace mgl::testing {

// The first `bytes` of the generated text, prepared with the byte tokenizer into `dir`.
inline apps::PreparedData generated_sample(const std::filesystem::path& dir, size_t bytes) {
  const std::filesystem::path input = dir / "generated_sample.txt";
  std::ofstream(input, std::ios::binary) << synthetic_text(bytes);
  apps::PrepareOptions o;
  o.inputs = {input.string()};
  o.out = (dir / "data").string();
  o.seq_len = 128;
  o.val_fraction = 0.01;
  return apps::prepare_data(o);
}

// The tiny model on short sequences: about 0.1 s a step on two cores.
inline apps::RunConfig small_run(int64_t steps) {
  apps::RunConfig c;
  c.name = "test";
  c.model = nn::MegalodonConfig::preset("tiny");
  c.optimizer.lr = 3e-3;
  c.schedule.warmup_steps = std::min<int64_t>(20, steps / 2);
  c.train.steps = steps;
  c.train.batch_size = 4;
  c.train.seq_len = 128;
  c.train.log_every = 10;
  c.train.checkpoint_every = 1000;
  c.eval.every = 0;
  c.eval.batches = 2;
  return c;
}

inline apps::TrainerOptions options_for(const apps::RunConfig& c, const apps::PreparedData& data,
                                        const std::filesystem::path& out, bool resume = false,
                                        Device device = Device::cpu()) {
  apps::TrainerOptions o;
  o.config = c;
  o.data = data;
  o.out = out.string();
  o.resume = resume;
  o.device = device;
  o.console = nullptr;
  return o;
}

// Copies the finished run `from` to `to` as a SIGKILL right after step `step`'s checkpoint would have left
// it: the later checkpoints gone, the later steps (and the final validation) still in the metrics file.
inline void copy_as_interrupted(const std::filesystem::path& from, const std::filesystem::path& to, int64_t step) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
  for (const auto& [saved, path] : nn::CheckpointDirectory((to / "checkpoints").string(), 1000).list())
    if (saved > step) std::filesystem::remove(path);
}

inline std::vector<nlohmann::json> read_metrics(const std::filesystem::path& run) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// The metrics without the wall-clock fields and the device memory (which depends on the grid).
inline std::vector<nlohmann::json> deterministic_metrics(const std::filesystem::path& run) {
  std::vector<nlohmann::json> lines = read_metrics(run);
  for (nlohmann::json& line : lines)
    for (const char* key : {"tokens_per_s", "tokens_per_s_per_device", "step_ms", "mfu", "elapsed_s", "device_mem_gib",
                            "device_peak_gib"})
      line.erase(key);
  return lines;
}

}  // namespace mgl::testing

// Fuzz target: the config parser (apps/lib/run_config.h, nn/megalodon_config.h). The input is a config file,
// optionally followed by a NUL byte and `--set` overrides, one per line. The file is loaded as `train --config`
// loads it (RunConfig::load: our sections, or a model config alone such as an official ModelConf JSON) and as a
// model config alone (MegalodonConfig::from_json, what `convert --config` reads); the overrides are applied and
// the result validated. A config that validates must survive what a run does with it: its resolved JSON (kept
// in every checkpoint) reads back as the same config, and its parameter count is computed.
// Seeds: configs/*.json and the official config.json of an export (tests/fuzz/make_seeds.sh).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "apps/lib/run_config.h"
#include "base/error.h"
#include "fuzz/harness.h"

namespace {

using mgl::apps::RunConfig;
using mgl::nn::MegalodonConfig;

void check_round_trip(const RunConfig& config) {
  const std::string json = config.to_json();
  std::string reread;
  try {
    reread = RunConfig::from_json(json).to_json();
  } catch (const mgl::Error& e) {
    mgl::fuzz::require(false, std::string("a valid config's JSON does not read back: ") + e.what() + "\n" + json);
  }
  mgl::fuzz::require(reread == json, "a valid config's JSON reads back as another config:\n" + json + "\n" + reread);
  mgl::fuzz::require(mgl::apps::first_run_config_difference(json, reread, {}).empty(),
                     "first_run_config_difference sees a difference between equal configs");
  config.model.parameter_count();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view file = input.substr(0, nul);
  const std::string_view overrides = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  const std::string path = mgl::fuzz::write_scratch_file("config.json", file);
  mgl::fuzz::expect_success_or_error([&] {
    const MegalodonConfig model = MegalodonConfig::from_json(std::string(file));
    model.validate();
    model.parameter_count();
  });
  mgl::fuzz::expect_success_or_error([&] {
    RunConfig config = RunConfig::load(path);
    for (size_t start = 0; start < overrides.size();) {
      const size_t end = std::min(overrides.find('\n', start), overrides.size());
      config.set(std::string(overrides.substr(start, end - start)));
      start = end + 1;
    }
    config.validate();
    check_round_trip(config);
  });
  return 0;
}

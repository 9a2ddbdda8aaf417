#pragma once
// Parsing an app's command line with CLI11, the same way in every app (docs/reliability.md, "Exit
// status"): --help prints and exits 0; a bad command line (an unknown flag, a value that does not parse
// or is out of its range, a missing required option) is one line "<app>: error: <what>" on stderr and
// exit status kExitUsage, so that a script can tell "called wrongly" from "failed while running".
// (CLI11's own CLI11_PARSE would exit with its internal codes 104-114 instead.)
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "apps/lib/app_errors.h"
#include "apps/lib/kernel_profiler.h"
#include "base/value_range.h"

namespace mgl::apps {

// A check on an integer option's text, before CLI11 converts it: CLI11 (2.1) clamps an integer that
// overflows its type to the type's limit (--steps 99999999999999999999 ran 2^63 - 1 steps) and wraps
// -1 into an unsigned seed, so the text itself must be a whole number in [low, high].
inline CLI::Validator integer_in(int64_t low, int64_t high) {
  return CLI::Validator(
      [low, high](std::string& text) -> std::string {
        int64_t value = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, value);
        if (error == std::errc() && stop == end && value >= low && value <= high) return {};
        return "expects a whole number in [" + std::to_string(low) + ", " + std::to_string(high) + "], got '" + text +
               "'";
      },
      "INT in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
}

// A check on a real-number option's text, before CLI11 converts it: the whole text must be a number inside
// `range`, which refuses NaN and the infinities (base/value_range.h). CLI11 alone converts "nan" and "inf",
// and its CLI::Range lets NaN through (no comparison with NaN fails). --top-p 1.5 is refused as
// "--top-p: expects a number in (0, 1], got '1.5'".
inline CLI::Validator real_in(const ValueRange& range) {
  return CLI::Validator(
      [range](std::string& text) -> std::string {
        double value = 0;
        const char* end = text.data() + text.size();
        const auto [stop, error] = std::from_chars(text.data(), end, value);
        if (error == std::errc() && stop == end && range.contains(value)) return {};
        return "expects a number in " + range.describe() + ", got '" + text + "'";
      },
      "NUMBER in " + range.describe());
}

// The flags that choose a run's config, spelled alike in train and bench_train: --config (a name in
// configs/ or a file) and --set section.key=value, for RunConfig::load and RunConfig::set.
inline void add_run_config_options(CLI::App& app, std::string& config, std::vector<std::string>& overrides) {
  app.add_option("--config", config, "a config name in configs/ or a JSON file (an official ModelConf too)");
  app.add_option("--set", overrides, "override a config key: section.key=value (repeatable)");
}

// The kernel profiler's flags, spelled alike in train and bench_train (docs/perf.md, "Kernel profiler");
// `window` says which steps --profile profiles in this app. Returns --profile, which the others need.
inline CLI::Option* add_profile_options(CLI::App& app, ProfileOptions& profile, const std::string& window) {
  CLI::Option* flag = app.add_flag("--profile", profile.enabled,
                                   "record the GPU kernels (CUPTI) of " + window + " and print the top ones by time");
  app.add_option("--profile-steps", profile.steps, "steps --profile records")->check(integer_in(1, kMaxCount))->needs(flag);
  app.add_option("--profile-top", profile.top, "kernels --profile prints")->check(integer_in(1, kMaxCount))->needs(flag);
  app.add_option("--profile-json", profile.json, "also write the whole profile to this JSON file")->needs(flag);
  return flag;
}

// Returns std::nullopt when the app should go on, else the status to return from main.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, const char* name) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace mgl::apps

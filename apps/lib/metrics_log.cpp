#include "apps/lib/metrics_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/lib/files.h"
#include "base/error.h"

namespace mgl::apps {

namespace fs = std::filesystem;

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  if (fs::exists(path)) {
    std::ifstream in(path);
    std::string kept, line;
    while (std::getline(in, line)) {
      const auto object = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      // A line cut by a kill (not valid JSON) or from beyond the resumed step is dropped.
      if (object.is_discarded() || !object.contains("step") || object["step"].get<int64_t>() > resume_step) continue;
      kept += line + "\n";
    }
    write_file_atomically(path, kept);
  }
  file_ = std::fopen(path.c_str(), "a");
  MGL_CHECK(file_, "cannot open the metrics file '", path, "' for writing");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const std::string& json_object) {
  MGL_CHECK(std::fprintf(file_, "%s\n", json_object.c_str()) >= 0 && std::fflush(file_) == 0,
            "cannot write to the metrics file '", path_, "'");
}

ProgressLine::ProgressLine(std::FILE* out, bool in_place) : out_(out), terminal_(in_place && isatty(fileno(out)) != 0) {}

void ProgressLine::update(const std::string& text) {
  if (!terminal_) {
    std::fprintf(out_, "%s\n", text.c_str());
  } else {
    const size_t pad = last_length_ > text.size() ? last_length_ - text.size() : 0;
    std::fprintf(out_, "\r%s%*s", text.c_str(), static_cast<int>(pad), "");
    last_length_ = text.size();
  }
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (terminal_ && last_length_ > 0) std::fprintf(out_, "\n");
  last_length_ = 0;
  std::fflush(out_);
}

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof(text), "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(text, sizeof(text), "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(text, sizeof(text), "%llds", static_cast<long long>(s));
  }
  return text;
}

}  // namespace mgl::apps

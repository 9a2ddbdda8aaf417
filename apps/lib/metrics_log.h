#pragma once
// Training output: the metrics file (JSONL, one object per logged step) and the progress line.
#include <cstdint>
#include <cstdio>
#include <string>

namespace mgl::apps {

// <run>/metrics.jsonl. Opening it for a run that resumes at step s first drops every line with a step
// > s (rewritten through a temporary file and a rename), so that after an interruption the file holds
// each step once and equals the uninterrupted run's file line for line.
class MetricsLog {
 public:
  MetricsLog(const std::string& path, int64_t resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends one JSON object (a line) and flushes it, so a killed run loses nothing it logged.
  void write(const std::string& json_object);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// The progress line: on a terminal it is rewritten in place ("\r"), otherwise each update is a line.
class ProgressLine {
 public:
  // Rewrites one line in place on a terminal (unless `in_place` is false); prints a line per update
  // otherwise.
  explicit ProgressLine(std::FILE* out, bool in_place = true);
  void update(const std::string& text);
  // Ends the in-place line (before other output, or at the end).
  void finish();

 private:
  std::FILE* out_;
  bool terminal_;
  size_t last_length_ = 0;
};

// "1h02m", "3m07s", "12s".
std::string format_duration(double seconds);

}  // namespace mgl::apps

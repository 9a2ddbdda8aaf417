#pragma once
// Whole-file reads and atomic writes, shared by the apps.
#include <string>

namespace mgl::apps {

// The bytes of the file at `path`. Throws mgl::Error "cannot read <what> '<path>'" when it cannot be opened.
std::string read_file(const std::string& path, const std::string& what = "file");

// Writes `contents` to <path>.tmp and renames it over `path`, so that a reader (or a crash) never sees a
// half-written file under the final name. Throws mgl::Error naming the file when the write fails.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace mgl::apps

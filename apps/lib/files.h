#pragma once
// Whole-file reads and atomic writes, shared by the apps. A failure names the path and the OS reason
// (strerror: "No space left on device", "Permission denied", "Is a directory", ...), never only "failed".
#include <string>

namespace mgl::apps {

// The text of errno, the OS reason of the last failed call.
std::string os_reason();

// The bytes of the file at `path`. Throws mgl::Error "cannot read <what> '<path>': <reason>".
std::string read_file(const std::string& path, const std::string& what = "file");

// Writes `contents` to <path>.tmp, syncs it to the disk and renames it over `path` (core/atomic_file.h), so
// that a reader (or a crash) never sees a half-written file under the final name. Throws mgl::Error naming
// the file and the OS reason when the write fails.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace mgl::apps

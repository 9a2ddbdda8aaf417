#include "apps/lib/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "base/error.h"
#include "core/atomic_file.h"

namespace mgl::apps {

namespace {

struct CloseFile {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, CloseFile>;

}  // namespace

std::string os_reason() { return std::strerror(errno); }

std::string read_file(const std::string& path, const std::string& what) {
  const File in(std::fopen(path.c_str(), "rb"));
  MGL_CHECK(in, "cannot read ", what, " '", path, "': ", os_reason());
  std::string contents;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), in.get())) > 0) contents.append(buffer, n);
  // A directory opens but does not read (EISDIR): the reason is in errno either way.
  MGL_CHECK(!std::ferror(in.get()), "cannot read ", what, " '", path, "': ", os_reason());
  return contents;
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  AtomicFile file(path);
  file.write(contents.data(), contents.size());
  file.commit();
}

}  // namespace mgl::apps

#include "apps/lib/files.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "base/error.h"

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
  const std::string temporary = path + ".tmp";
  {
    std::FILE* raw = std::fopen(temporary.c_str(), "wb");
    MGL_CHECK(raw, "cannot write '", temporary, "': ", os_reason());
    File out(raw);
    // fflush and fsync too: a full disk often shows only there, and the rename below must not publish
    // a file whose bytes are not yet on disk.
    const bool written = std::fwrite(contents.data(), 1, contents.size(), raw) == contents.size() &&
                         std::fflush(raw) == 0 && ::fsync(::fileno(raw)) == 0;
    if (!written) {
      const std::string reason = os_reason();
      out.reset();
      std::remove(temporary.c_str());
      MGL_FAIL("cannot write '", temporary, "': ", reason);
    }
    MGL_CHECK(std::fclose(out.release()) == 0, "cannot write '", temporary, "': ", os_reason());
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  MGL_CHECK(!error, "cannot rename '", temporary, "' to '", path, "': ", error.message());
}

}  // namespace mgl::apps
